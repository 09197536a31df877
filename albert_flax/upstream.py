"""Workarounds for the behaviour of the libraries we build on, in one place.

Each entry names what a library does, where it is reported (an issue where one exists), the
version that would let the workaround go, and the test that fails without it. The code that works
around it names the entry (`upstream.ORBAX_ABORTED_READS`) or calls the function beside it, so a
search for the entry finds every place to change when the library moves on.

The functions here change the process only when called: the programs call
`drop_aborted_read_noise` at their start (albert_flax.train.program); the others run where the
library needs them (a grain worker pool, TPU devices for compile-only).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any


@dataclasses.dataclass(frozen=True)
class Workaround:
  """An upstream behaviour we work around."""

  behaviour: str  # what the library does
  reported: str  # an issue link, or where the behaviour is described
  until: str  # the version (or change) that would let the workaround go
  test: str  # the test that fails without the workaround


ORBAX_ABORTED_READS = Workaround(
  behaviour="orbax-checkpoint 0.12.8 goes on reading the other arrays of a checkpoint whose "
  "restore failed; what is left of those reads fails later, when collected: tensorstore callbacks "
  'on a closed event loop ("Event loop is closed"), asyncio\'s "Task/Future exception was never '
  'retrieved", and read coroutines whose GeneratorExit becomes an error naming the file '
  "(unraisable). Dozens of tracebacks after the one-line fallback warning.",
  reported="not found in google/orbax's issues",
  until="an orbax-checkpoint whose restore cancels and awaits its pending reads on failure",
  test="tests/test_reliability.py::test_a_fallback_over_an_unreadable_checkpoint_is_one_log_line",
)

ORBAX_BARRIER_NAMES = Workaround(
  behaviour="orbax-checkpoint 0.12.8 names an asynchronous save's barriers after the step only "
  "(async_write_complete.<step>...), and a barrier name may be waited on once: two managers "
  "saving the same step (fine-tuning's checkpoints/latest and checkpoints/best) share a barrier, "
  "and one commits before every process has written its part.",
  reported="not found in google/orbax's issues",
  until="an orbax-checkpoint that names barriers per manager (or per directory)",
  test="tests/test_finetune_multiprocess.py",
)

ORBAX_BUCKET_METADATA = Workaround(
  behaviour="orbax-checkpoint 0.12.8: in a bucket, CheckpointManager.metadata(step) raises on a "
  "host other than the primary after that host's own save (its handler keeps the items' "
  "temporary paths, which in a bucket are the final names; only the primary's finalize clears "
  "them).",
  reported="not found in google/orbax's issues",
  until="an orbax-checkpoint whose non-primary hosts clear their temporary paths after a save",
  test="tests/test_gcs_programs.py",
)

XLA_CPU_BF16_DOT_ORDER = Workaround(
  behaviour="XLA's CPU backend (jax 0.10.2) rejects some bf16 x bf16 -> f32 dots whose operand "
  "order does not match the output's dimension order: 'Unsupported element type for DotThunk'.",
  reported="not found in openxla/xla's issues",
  until="an XLA CPU runtime whose DotThunk takes bf16 operands in either order",
  test="tests/test_bf16_hlo.py",
)

XLA_COST_ANALYSIS_LOOPS = Workaround(
  behaviour="XLA's cost_analysis() counts a while loop's body once, whatever its trip count: the "
  "scanned layers' FLOPs would count once, not L times.",
  reported="documented behaviour of HloCostAnalysis (a static count over the HLO)",
  until="a cost analysis that multiplies loop bodies by their known trip counts",
  test="tests/test_tpu_compile.py (model FLOPs come from albert_flax.flops instead)",
)

GRAIN_UNPARSED_ABSL_FLAGS = Workaround(
  behaviour="grain 0.2.18's mp_prefetch reads one of its absl flags (worker profiling) without "
  "checking that flags were parsed, which raises in a process that does not use absl.app "
  "(notebooks, tests, scripts).",
  reported="not found in google/grain's issues",
  until="a grain that reads the flag's default when flags are not parsed",
  test="tests/test_pretrain_grain.py",
)

LIBTPU_LOCKFILE = Workaround(
  behaviour="libtpu takes the machine-wide /tmp/libtpu_lockfile when loaded, even to compile for "
  "a described topology (no chip opened), so compile-only fails while another jax process on "
  "the machine holds it.",
  reported="https://github.com/jax-ml/jax/issues/10192",
  until="a libtpu that skips the lock for compile-only topologies",
  test="tests/test_tpu_compile.py (beside another jax process)",
)


LIBTPU_RUNTIME_WITHOUT_CHIP = Workaround(
  behaviour="libtpu, loaded only for its compiler (compile-only mode on a machine without a TPU "
  "chip), still starts its runtime, which asks the TPU VM's metadata server for worker hostnames "
  "and host bounds and prints a screen of errors when there is none.",
  reported="no upstream report found; the messages are libtpu's 'unexpected worker hostname' and "
  "'Failed to find host bounds'",
  until="a libtpu whose compile-only (described topology) path does not start the runtime",
  test="tests/test_cli_usage.py (compile-only cases: no libtpu line in the output)",
)


# ------------------------------------------------------------------- ORBAX_ABORTED_READS

_UNRETRIEVED = ("Task exception was never retrieved", "Future exception was never retrieved")


def _is_closed_loop_noise(error: BaseException | None) -> bool:
  return isinstance(error, RuntimeError) and "Event loop is closed" in str(error)


class _AbortedReadNoise(logging.Filter):
  """asyncio's log filter and the process's unraisable hook in one (ORBAX_ABORTED_READS).

  Drops "Event loop is closed" errors, and never-retrieved or unraisable errors that name a
  checkpoint found unreadable (`remember_unreadable`); everything else goes to the log or to the
  hook that was there before. The step directories it knows are this process's: they live in
  the hook the program installed at its start, not in any module.
  """

  def __init__(self, previous: Any):
    super().__init__()
    self.previous = previous
    self.unreadable: set[str] = set()

  def names_unreadable(self, text: str) -> bool:
    return any(step_dir in text for step_dir in self.unreadable)

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    exc = record.exc_info[1] if record.exc_info else None
    if message.startswith(_UNRETRIEVED) and self.names_unreadable(f"{message} {exc}"):
      return False
    return "Event loop is closed" not in message and not _is_closed_loop_noise(exc)

  def __call__(self, unraisable: Any) -> None:
    error = unraisable.exc_value
    if not _is_closed_loop_noise(error) and not self.names_unreadable(str(error)):
      self.previous(unraisable)


def drop_aborted_read_noise() -> None:
  """Install the filter of ORBAX_ABORTED_READS (once per process): on asyncio's logger and as
  `sys.unraisablehook`. The programs call it at their start; a library user who restores
  training checkpoints may call it too."""
  if isinstance(sys.unraisablehook, _AbortedReadNoise):
    return  # installed already
  noise = _AbortedReadNoise(sys.unraisablehook)
  logging.getLogger("asyncio").addFilter(noise)
  sys.unraisablehook = noise


def remember_unreadable(step_dir: Any) -> None:
  """Tell the installed filter (if any) that the checkpoint `step_dir` did not read back: the
  noise of its aborted reads names it ("/w/checkpoints/20/"; in a bucket also without
  "gs://bucket/", as tensorstore's specs give the path). Without the filter: nothing to do."""
  noise = sys.unraisablehook
  if not isinstance(noise, _AbortedReadNoise):
    return
  name = str(step_dir).rstrip("/") + "/"
  noise.unreadable.add(name)
  _, sep, rest = name.partition("://")
  if sep:  # "gs://bucket/w/checkpoints/20/" -> also "w/checkpoints/20/"
    noise.unreadable.add(rest.partition("/")[2])


# ------------------------------------------------------------- GRAIN_UNPARSED_ABSL_FLAGS


def allow_unparsed_absl_flags() -> None:
  """Mark absl's flags parsed, at their defaults, unless they are (GRAIN_UNPARSED_ABSL_FLAGS);
  called before starting grain's worker processes. A later absl.app.run parses argv as usual."""
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


# ----------------------------------------------------------------------- LIBTPU_LOCKFILE


def allow_multiple_libtpu_load() -> None:
  """Let this process load libtpu while another holds its lock file (LIBTPU_LOCKFILE); only for
  compiling against a described topology, which never opens a chip. Read when libtpu loads."""
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


# ------------------------------------------------------------ LIBTPU_RUNTIME_WITHOUT_CHIP

# What libtpu's runtime would ask the metadata server for; given these it asks nothing. The
# compiled program comes from --topology alone: a v5e:2x2 compile reports the same figures with
# and without them.
_NO_TPU_RUNTIME = {
  "TPU_SKIP_MDS_QUERY": "1",
  "TPU_WORKER_HOSTNAMES": "localhost",
  "TPU_WORKER_ID": "0",
  "TPU_ACCELERATOR_TYPE": "v4-8",
}


def quiet_libtpu_runtime() -> None:
  """Before libtpu loads, on a machine without a TPU chip: keep its runtime from looking for TPU
  hosts (each variable only when unset), and jax from logging that it found no TPU backend."""
  for name, value in _NO_TPU_RUNTIME.items():
    os.environ.setdefault(name, value)
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
