"""The command-line skeleton both programs share: flags, distributed start-up, logging, exit codes.

    # <program>/__main__.py
    FLAGS = program.define_flags(default_config=..., default_workdir=...)
    def main(argv):
      program.start(FLAGS, loggers=("pretrain",))
      program.finish(FLAGS, "pretrain", train.train_and_evaluate(FLAGS.config.value, ...))
    if __name__ == "__main__":
      program.run(main)

Exit status (what a job scheduler sees):
  0   EXIT_OK            the run finished (or was finished already)
  1   EXIT_FAILED        an error: the message says what; fix it before rerunning
  2   EXIT_USAGE         bad flags, config keys or config values (found before any work starts)
  73  EXIT_WORKDIR_BUSY  another run holds the workdir's lock (the message names it)
  75  EXIT_INTERRUPTED   stopped by SIGTERM or SIGINT after saving a checkpoint: rerun the same
                         command to resume (EX_TEMPFAIL: "try again later")
  -9 / 137              killed outright (SIGKILL): rerun to resume from the last checkpoint
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from albert_flax import paths, upstream
from albert_flax.train import aot

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_WORKDIR_BUSY = 73
EXIT_INTERRUPTED = 75

log = logging.getLogger(__name__)


class WorkdirBusyError(RuntimeError):
  """Another run holds the workdir (EXIT_WORKDIR_BUSY)."""


class ConfigError(ValueError):
  """A config value that cannot work, found before any work starts (EXIT_USAGE): the message
  names the keys. The command line reports it in one line, without a traceback."""


@dataclasses.dataclass
class ProgramFlags:
  """The flags every program has (absl FlagHolders)."""

  config: Any
  workdir: Any
  jax_distributed: Any
  coordinator_address: Any
  num_processes: Any
  process_id: Any
  compilation_cache_dir: Any
  aot: Any  # albert_flax.train.aot.Flags: --compile_only, --topology, --num_slices, ...


def define_flags(
  default_config: str | None, default_workdir: str | None, config_help: str
) -> ProgramFlags:
  """Define --config (ml_collections file), --workdir, the distributed start-up flags and the
  compile-only flags (`albert_flax.train.aot`). --workdir is required (when it has no default)
  unless --compile_only is given: `start` checks it."""
  from absl import flags
  from ml_collections import config_flags

  try:  # ml_collections applies the --config.KEY overrides of sys.argv here, at definition
    config = config_flags.DEFINE_config_file(
      "config", default_config, config_help, lock_config=True
    )
  except (AttributeError, KeyError) as e:
    _bad_config_key(e, sys.argv)
  holders = ProgramFlags(
    config=config,
    workdir=flags.DEFINE_string(
      "workdir",
      default_workdir,
      "Checkpoints, metrics, the model (a local folder or gs://bucket/...); a rerun resumes here.",
    ),
    jax_distributed=flags.DEFINE_bool(
      "jax_distributed",
      False,
      "Call jax.distributed.initialize() with auto-detection (TPU pods, SLURM).",
    ),
    coordinator_address=flags.DEFINE_string(
      "coordinator_address", None, "HOST:PORT of process 0 (sets up jax.distributed by hand)."
    ),
    num_processes=flags.DEFINE_integer("num_processes", None, "Number of processes."),
    process_id=flags.DEFINE_integer("process_id", None, "This process's index."),
    compilation_cache_dir=flags.DEFINE_string(
      "compilation_cache_dir",
      DEFAULT_COMPILATION_CACHE,
      "jax's persistent compilation cache (a local folder or gs://...): a rerun, another seed "
      "or another run of the same model and shapes loads its compiled steps instead of "
      "compiling them; '' turns it off. JAX_COMPILATION_CACHE_DIR, when set, is used unless "
      "this flag is given.",
    ),
    aot=aot.define_flags(),
  )
  if not default_config:
    flags.mark_flags_as_required(["config"])
  return holders


def start(program_flags: ProgramFlags, loggers: Sequence[str]) -> None:
  """jax.distributed as the flags say, then logging: our loggers at INFO on process 0 (WARNING
  elsewhere), the libraries' (orbax logs every file it writes) at WARNING."""
  import jax
  from absl import app
  from absl import logging as absl_logging

  paths.configure_storage()  # before any path is used
  if not program_flags.workdir.value:
    raise app.UsageError("--workdir is required (unless --compile_only)")
  if program_flags.coordinator_address.value:
    # CPU processes need a collectives backend; harmless on accelerators.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      program_flags.coordinator_address.value,
      num_processes=program_flags.num_processes.value,
      process_id=program_flags.process_id.value,
    )
  elif program_flags.jax_distributed.value:
    jax.distributed.initialize()
  level = logging.INFO if jax.process_index() == 0 else logging.WARNING
  logging.getLogger().setLevel(level)
  absl_logging.set_verbosity(absl_logging.WARNING)
  for name in (*loggers, "albert_flax"):
    logging.getLogger(name).setLevel(level)
  _quiet_asyncio_after_fallback()
  flag = program_flags.compilation_cache_dir
  use_compilation_cache(flag.value, explicit=flag.present)


# MaxText keeps its cache in ~/jax_cache; ours sits with the other per-user caches.
DEFAULT_COMPILATION_CACHE = "~/.cache/albert_flax/jax"


def use_compilation_cache(directory: str, explicit: bool = False) -> str | None:
  """Points jax's persistent compilation cache at `directory` ('' / None: off), unless a cache
  was set already (JAX_COMPILATION_CACHE_DIR) and `directory` is not `explicit`. Entries are
  keyed by the program, the compile options, the devices and the jax version, so a hit is what
  a compile would give; jax caches programs that took over a second to compile. Returns the
  cache in use."""
  import jax
  from jax.experimental.compilation_cache import compilation_cache

  current = jax.config.jax_compilation_cache_dir
  if current and not explicit:
    return current
  if directory and "://" not in directory:
    directory = os.path.abspath(os.path.expanduser(directory))
  jax.config.update("jax_compilation_cache_dir", directory or None)
  compilation_cache.reset_cache()  # in case a compile already opened the previous one
  if not directory:
    return None
  log.info("compiled steps are cached in %s (--compilation_cache_dir)", directory)
  return directory


def exit_if_compile_only(program_flags: ProgramFlags, steps_module: str) -> None:
  """With --compile_only: compile the program's steps (`steps_module`'s compile_program, imported
  only then) for --topology's TPU slice, report, and exit (status 1 when they do not fit)."""
  if program_flags.aot.compile_only.value:
    import importlib

    build = importlib.import_module(steps_module).compile_program
    sys.exit(program_flags.aot.run(program_flags.config.value, build))


def _quiet_asyncio_after_fallback() -> None:
  """Drop the noise orbax's aborted reads of an unreadable checkpoint leave behind (the fallback
  to the previous checkpoint already logged one line): `upstream.ORBAX_ABORTED_READS`."""
  upstream.drop_aborted_read_noise()


def resume_command(program: str) -> str:
  """The command line that reruns this process (to resume it)."""
  return shlex.join([os.path.basename(sys.executable), "-m", program, *sys.argv[1:]])


def finish(
  program: str, result: Mapping[str, Any], summary: Callable[[], str] | None = None
) -> None:
  """Report the end of a run on process 0 and exit with the status of module docstring.

  `result` is what train_and_evaluate returned: {"interrupted": bool, "step": int, ...}.
  """
  import jax

  lead = jax.process_index() == 0
  if result.get("interrupted"):
    if lead:
      print(
        f"Interrupted at step {result.get('step')} ({result.get('signal') or 'signal'}); "
        f"a checkpoint of that step is saved. Resume with:\n  {resume_command(program)}",
        flush=True,
      )
    sys.exit(EXIT_INTERRUPTED)
  if lead and summary is not None:
    print(summary(), flush=True)


def _bad_config_key(error: Exception, argv: Sequence[str]) -> None:
  """Report an unknown --config.KEY in one line and exit with EXIT_USAGE."""
  key = str(error).strip("\"'")
  given = [a for a in argv[1:] if a.startswith("--config.") and key in a.split("=", 1)[0]]
  print(
    f"error: unknown config key {key!r}"
    + (f" in {given[0]}" if given else "")
    + ": the config file has no such key (check the spelling against the config file)",
    file=sys.stderr,
    flush=True,
  )
  sys.exit(EXIT_USAGE)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad --config.KEY reported in one line (ml_collections raises
  from deep inside absl's parser, which would print its whole traceback)."""
  from absl import flags

  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}\nPass --help for the flags.", file=sys.stderr, flush=True)
  except (AttributeError, KeyError) as e:
    _bad_config_key(e, argv)
  except (ValueError, TypeError) as e:
    print(f"error: bad flag value: {e}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USAGE)


def run(main: Callable[[list[str]], None]) -> None:
  """absl's app.run, with the exit codes above for a busy workdir and bad config keys or values
  (each reported in one line: the message says what to change; a traceback would bury it)."""
  from absl import app

  def wrapped(argv):
    try:
      main(argv)
    except WorkdirBusyError as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(EXIT_WORKDIR_BUSY)
    except ConfigError as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(EXIT_USAGE)

  app.run(wrapped, flags_parser=_parse_flags)
