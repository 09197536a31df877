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
  1   EXIT_FAILED        compile-only: the steps do not fit the slice; or an unexpected error (a
                         bug: its traceback is printed)
  2   EXIT_USAGE         a mistake the user can fix: bad flags, config keys or values, input files,
                         paths or checkpoints, a mesh or slice that cannot be, a setting the machine
                         cannot hold. One line names it (no traceback; --verbose or
                         ALBERT_FLAX_VERBOSE=1 shows it); config values are checked before any work
  73  EXIT_WORKDIR_BUSY  another run holds the workdir's lock (the message names it)
  75  EXIT_INTERRUPTED   stopped by SIGTERM or SIGINT after saving a checkpoint: rerun the same
                         command to resume (EX_TEMPFAIL: "try again later")
  -9 / 137              killed outright (SIGKILL): rerun to resume from the last checkpoint
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from albert_flax import paths, upstream
from albert_flax.train import aot, config_help, platforms
from albert_flax.train.mistakes import (
  ConfigError,
  WorkdirBusyError,
  mistake_message,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_WORKDIR_BUSY = 73
EXIT_INTERRUPTED = 75

log = logging.getLogger(__name__)


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
  verbose: Any = None
  configs_dir: str = ""  # the program's configs/ folder: --config may name a file there
  help_config: str = ""  # the config --help describes when --config is not given
  key_notes: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def holders(self) -> list[Any]:
    """The absl FlagHolders of the program's own flags, in --help's order."""
    own = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "aot"]
    return [h for h in own if hasattr(h, "name")] + [
      getattr(self.aot, f.name) for f in dataclasses.fields(self.aot)
    ]


_PROGRAM: ProgramFlags | None = None  # what define_flags made: --help and the errors use it
VERBOSE_ENV = "ALBERT_FLAX_VERBOSE"


def define_flags(
  default_config: str | None,
  default_workdir: str | None,
  config_help: str,
  configs_dir: str = "",
  key_notes: Mapping[str, str] | None = None,
  help_config: str = "",
) -> ProgramFlags:
  """Define --config (ml_collections file), --workdir, --verbose, the distributed start-up flags
  and the compile-only flags (`albert_flax.train.aot`). --workdir is required (when it has no
  default) unless --compile_only is given: `start` checks it.

  configs_dir: the program's config folder; --config may name one of its files ("glue") and a
  path relative to the repository root works from any directory. key_notes: config key ->
  why it is not a key (e.g. "model_overrides.vocab_size"), for the unknown-key message.
  help_config: the config file --help describes when --config is not given.
  """
  from absl import flags
  from ml_collections import config_flags

  global _PROGRAM
  _resolve_config_argument(sys.argv, configs_dir)
  try:  # ml_collections applies the --config.KEY overrides of sys.argv here, at definition
    config = config_flags.DEFINE_config_file(
      "config", default_config, config_help, lock_config=True
    )
  except (AttributeError, KeyError) as e:
    _bad_config_key(e, sys.argv, key_notes or {})
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
    verbose=flags.DEFINE_bool(
      "verbose",
      False,
      f"Print the traceback of a reported mistake too (or set {VERBOSE_ENV}=1).",
    ),
    configs_dir=configs_dir,
    help_config=help_config or default_config or "",
    key_notes=dict(key_notes or {}),
  )
  if not default_config:
    flags.mark_flags_as_required(["config"])
  _PROGRAM = holders
  return holders


def _config_value_at(argv: list[str]) -> tuple[int, str] | None:
  """(index in argv, value) of --config=VALUE or --config VALUE."""
  for i, arg in enumerate(argv[1:], start=1):
    if arg.startswith("--config="):
      return i, arg[len("--config=") :]
    if arg == "--config" and i + 1 < len(argv):
      return i + 1, argv[i + 1]
  return None


def _resolve_config_argument(argv: list[str], configs_dir: str) -> None:
  """--config names a file, a config of the program by name ("glue"), or a path relative to the
  repository root given from elsewhere (finetune/configs/glue.py); the latter two become the
  file's absolute path in argv. A file that does not exist is a usage error that lists the
  program's configs."""
  found = _config_value_at(argv)
  if found is None or not configs_dir:
    return
  index, value = found
  path, sep, args = value.partition(":")  # ml_collections' --config=FILE:ARGS
  if os.path.isfile(path):
    return
  root = os.path.dirname(os.path.dirname(os.path.abspath(configs_dir)))
  candidates = [os.path.join(root, path)]
  if os.sep not in path:
    candidates.insert(0, os.path.join(configs_dir, path if path.endswith(".py") else f"{path}.py"))
  for candidate in candidates:
    if os.path.isfile(candidate):
      resolved = os.path.abspath(candidate) + sep + args
      argv[index] = f"--config={resolved}" if argv[index].startswith("--config=") else resolved
      return
  names = config_help.other_configs(configs_dir, "")
  usage_error(
    f"config file {path!r} not found; the {_program_name()} configs are {', '.join(names)} "
    f"(--config=NAME, or a path: --config={os.path.join(configs_dir, names[0] + '.py')})"
  )


def start(program_flags: ProgramFlags, loggers: Sequence[str]) -> None:
  """jax.distributed as the flags say, then logging: our loggers at INFO on process 0 (WARNING
  elsewhere), the libraries' (orbax logs every file it writes) at WARNING."""
  import jax
  from absl import app
  from absl import logging as absl_logging

  paths.configure_storage()  # before any path is used
  if not program_flags.workdir.value:
    raise app.UsageError("--workdir is required (unless --compile_only)")
  _check_workdir(program_flags.workdir.value)
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


def _check_workdir(workdir: str) -> None:
  """A local --workdir that is a file, or a folder this process cannot write, is a usage error
  before any work (a bucket's permissions show at the first write)."""
  from absl import app

  if "://" in workdir:
    return
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise app.UsageError(f"--workdir {workdir!r} is a file, not a folder")
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.access(existing, os.W_OK | os.X_OK):
    raise app.UsageError(f"--workdir {workdir!r}: {existing} is not writable by this user")


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

    platforms.quiet_libtpu_without_tpu()

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


def _bad_config_key(error: Exception, argv: Sequence[str], notes: Mapping[str, str]) -> None:
  """Report an unknown --config.KEY in one line and exit with EXIT_USAGE. ml_collections' own
  message is a quoted repr with a "did you mean" guess among all keys; the key is named here
  with the closest keys of its own level, or with why it is not a key (`notes`)."""
  while error.args and isinstance(error.args[0], BaseException):  # AttributeError(KeyError(..))
    error = error.args[0]
  raw = str(error.args[0]) if error.args else str(error)
  key = raw.split("\n", 1)[0].strip().strip("\"'")
  given = [a for a in argv[1:] if a.startswith("--config.") and key in a.split("=", 1)[0]]
  flag = given[0].split("=", 1)[0] if given else f"--config...{key}"
  dotted = flag[len("--config.") :] if given else key
  if dotted in notes:
    usage_error(f"{flag}: {dotted} cannot be set: {notes[dotted]}")
  suggestion = ""
  guessed = raw.split("Did you mean", 1)
  if len(guessed) == 2:
    candidates = [c.strip(' "') for c in guessed[1].split("instead of")[0].split(",")]
    close = difflib.get_close_matches(key, candidates, n=1)
    if close:
      suggestion = f"; did you mean {close[0]!r}?"
  usage_error(
    f"unknown config key {key!r}"
    + (f" in {given[0]}" if given else "")
    + suggestion
    + f" (python -m {_program_name()} --help lists the keys)"
  )


def _program_name() -> str:
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  name = getattr(spec, "name", "") or ""
  return name.rsplit(".__main__", 1)[0] or os.path.basename(sys.argv[0])


def usage_error(message: str) -> None:
  """Print `error: message` on stderr and exit with EXIT_USAGE."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USAGE)


_HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--help=true", "--help=True")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad --config.KEY reported in one line (ml_collections raises
  from deep inside absl's parser, which would print its whole traceback), and --help showing
  the program's flags and config keys (absl's lists neither)."""
  from absl import flags

  wants_help = any(a in _HELP_FLAGS for a in argv[1:])
  argv = [a for a in argv if a not in _HELP_FLAGS]
  try:
    remaining = flags.FLAGS(argv)
  except flags.Error as e:
    if wants_help and _PROGRAM is not None:  # e.g. a required --config: help without it
      flags.FLAGS.mark_as_parsed()
      print_help()
      sys.exit(EXIT_OK)
    usage_error(f"{e}\nPass --help for the flags.")
  except (AttributeError, KeyError) as e:
    _bad_config_key(e, argv, _PROGRAM.key_notes if _PROGRAM else {})
  except (ValueError, TypeError) as e:
    usage_error(f"bad flag value: {e}")
  if wants_help:
    print_help()
    sys.exit(EXIT_OK)
  return remaining


def print_help() -> None:
  """The program's usage, its own flags, and every --config.KEY with its value and meaning."""
  from absl import flags

  name = _program_name()
  program = _PROGRAM
  doc = (getattr(sys.modules.get("__main__"), "__doc__", "") or "").strip()
  out = [doc.split("\n\n", 1)[0] if doc else f"python -m {name}", ""]
  if program is None:
    print("\n".join(out))
    return
  out += ["flags:", *config_help.describe_flags(program.holders()), ""]
  path = program.help_config
  config = None
  if program.config.present or not program.help_config:
    try:
      config = program.config.value
      path = flags.FLAGS["config"].config_filename or path
    except Exception:  # a config that fails to load: its own error comes with a run
      config = None
  if config is None and path:
    config = _load_config_file(path)
  if config is not None:
    others = config_help.other_configs(program.configs_dir, path) if program.configs_dir else []
    out.append(f"config keys of {os.path.abspath(path)} (--config.KEY=VALUE):")
    out += config_help.describe_config(config, path)
    if others:
      out += ["", f"other configs (--config=NAME, then --help for their keys): {', '.join(others)}"]
  out += ["", "--helpfull also lists the flags of jax, absl and the other libraries."]
  print("\n".join(out), flush=True)


def _load_config_file(path: str) -> Any:
  import importlib.util

  spec = importlib.util.spec_from_file_location("_help_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# --------------------------------------------------------------------- reporting mistakes


def _verbose() -> bool:
  if os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
    return True
  holder = _PROGRAM.verbose if _PROGRAM is not None else None
  try:
    return bool(holder.value) if holder is not None else "--verbose" in sys.argv
  except Exception:  # flags not parsed yet
    return "--verbose" in sys.argv


def _positional_arguments(argv: list[str]) -> None:
  if len(argv) > 1:
    extra = argv[1:]
    hint = ""
    if len(extra) == 1 and not extra[0].startswith("-"):
      hint = f" (a workdir is given as --workdir={extra[0]})"
    usage_error(
      f"unexpected argument{'s' if len(extra) > 1 else ''} {' '.join(map(repr, extra))}{hint}; "
      f"usage: python -m {_program_name()} --config=FILE --workdir=DIR [--config.KEY=VALUE ...]"
      " (--help lists the flags and keys)"
    )


def run(main: Callable[[list[str]], None]) -> None:
  """absl's app.run, with the exit codes above: a busy workdir, and the user's mistakes (each
  reported in one line: the message says what to change; a traceback would bury it). Anything
  else is a bug and keeps its traceback."""
  from absl import app

  def wrapped(argv):
    _positional_arguments(argv)
    if _PROGRAM is not None and not _PROGRAM.aot.compile_only.value:
      platforms.use_cpu_without_accelerator()
    try:
      main(argv)
    except WorkdirBusyError as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(EXIT_WORKDIR_BUSY)
    except Exception as e:
      message = mistake_message(e)
      if message is None:
        raise
      if _verbose():
        traceback.print_exc()
      elif not isinstance(e, (ConfigError, app.UsageError)):
        message += f"\n(--verbose or {VERBOSE_ENV}=1 shows where)"
      print(f"error: {message}", file=sys.stderr, flush=True)
      sys.exit(EXIT_USAGE)

  app.run(wrapped, flags_parser=_parse_flags)
