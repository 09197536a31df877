"""The errors a program reports in one line, without a traceback, and how it tells them from
bugs (`mistake_message`): config and usage errors, operating-system errors, this project's own
checks, running out of memory. `albert_flax.train.program.run` turns them into exit codes.
"""

from __future__ import annotations

import os
import sys


class WorkdirBusyError(RuntimeError):
  """Another run holds the workdir (EXIT_WORKDIR_BUSY)."""


class ConfigError(ValueError):
  """A config value that cannot work, found before any work starts (EXIT_USAGE): the message
  names the keys. The command line reports it in one line, without a traceback."""


def our_roots() -> tuple[str, ...]:
  """The folders of this project's packages (the library and the programs)."""
  roots = []
  for name in ("albert_flax", "pretrain", "finetune"):
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None):
      roots.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
  return tuple(roots)


def raised_here(error: BaseException) -> bool:
  """Whether the innermost frame of `error`'s traceback is this project's code: a message
  written for the user, not a library's internal failure."""
  tb, last = error.__traceback__, None
  while tb is not None:
    last, tb = tb, tb.tb_next
  return last is not None and os.path.abspath(last.tb_frame.f_code.co_filename).startswith(
    our_roots()
  )


OUT_OF_MEMORY_HINT = (
  "lower --config.batch_size or --config.max_seq_length, or keep the batch and trade time for "
  "memory with --config.grad_accum_steps=N (N micro-batches per step, the same result) or "
  "--config.remat=full; on a CPU, a smaller --config.model (tiny)"
)


def mistake_message(error: BaseException) -> str | None:
  """The one-line report of an error the user can fix, or None for a bug (whose traceback is
  what helps). Mistakes: config and usage errors; files, folders, permissions and other
  operating-system errors; ValueError / ImportError / FloatingPointError raised by this
  project's own checks (bad data, a mesh or slice that cannot be, a checkpoint of another
  shape, no libtpu, a diverged loss); running out of memory."""
  from absl import app

  text = str(error).strip() or type(error).__name__
  if isinstance(error, (ConfigError, app.UsageError)):
    return text
  name = type(error).__name__
  if isinstance(error, MemoryError) or (
    name in ("XlaRuntimeError", "JaxRuntimeError") and "RESOURCE_EXHAUSTED" in text
  ):
    first = text.splitlines()[0][:300]
    return f"out of memory ({first}): {OUT_OF_MEMORY_HINT}"
  if isinstance(error, OSError):
    return text
  if isinstance(error, (ValueError, ImportError, FloatingPointError)) and raised_here(error):
    return text
  return None
