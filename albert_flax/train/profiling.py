"""Profiles on request: `jax.profiler` traces of chosen steps, written where TensorBoard's profile
plugin and Perfetto find them.

Three ways to ask, all ending in workdir/tensorboard/plugins/profile/<time>/ (<host>.xplane.pb
for TensorBoard's profile plugin / XProf, and <host>.trace.json.gz, a Chrome trace that
ui.perfetto.dev opens):

- `--config.profile_steps=START:END` traces steps START..END (both included);
- creating the file workdir/PROFILE_REQUEST (albert_flax.workdir.PROFILE_REQUEST_FILE) while the
  run goes traces the next N steps, N the number in the file (empty: `request_steps`); the run
  removes the file when it takes the request (looked for at a start's second step, then every
  `poll_seconds`; process 0 only). Not at the first: it compiles, and a trace of the compiler
  is large and slow to write, and not what was asked for;
- the signal SIGUSR1 does the same for the process it is sent to: `kill -USR1 <pid>`.

Only process 0 traces unless `all_processes` (profile_steps then traces the same steps on every
process). Each traced step is one "train" step annotation (`jax.profiler.StepTraceAnnotation`),
which TensorBoard's step-time views group by. At the end of a window the trace waits for the
device to finish the window's steps (every live array ready) before it stops, so the last step's
device work is in it; nothing of it costs anything while no trace is asked for.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time

import jax

from albert_flax import paths
from albert_flax import workdir as layout

log = logging.getLogger(__name__)

REQUEST_SIGNAL = signal.SIGUSR1


def parse_profile_steps(text: str) -> tuple[int, int] | None:
  """ "START:END" -> (START, END) (steps to trace, both included); "" -> None. ValueError naming
  the key for anything else."""
  text = (text or "").strip()
  if not text:
    return None
  match = re.fullmatch(r"(\d+):(\d+)", text)
  if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
    raise ValueError(
      f"profile_steps must be START:END with 1 <= START <= END (the steps to trace), got {text!r}"
    )
  return int(match.group(1)), int(match.group(2))


def add_config_keys(c) -> None:
  """The profiling and step-time keys of both programs' configs (safe to change on resume)."""
  # Steps to trace with jax.profiler, "START:END" (both included; "" none), written under
  # workdir/tensorboard/plugins/profile. While the run goes, the file workdir/PROFILE_REQUEST
  # (holding a number of steps, or nothing) or `kill -USR1 <pid>` traces the next steps.
  c.profile_steps = ""
  c.profile_all_processes = False  # False: only process 0 traces
  c.profile_request_steps = 5  # steps a PROFILE_REQUEST file without a number, or SIGUSR1, trace
  # A step slower than this many times the median of the recent steps (not one that compiled,
  # evaluated, saved or was profiled) is a warning naming it; 0 turns the warning off.
  c.slow_step_factor = 3.0


# The keys of `add_config_keys`: they change what is measured and logged, never what is computed.
CONFIG_KEYS = (
  "profile_steps",
  "profile_all_processes",
  "profile_request_steps",
  "slow_step_factor",
)


def config_problems(config) -> list[str]:
  """What is wrong with a config's profiling keys (empty: nothing)."""
  problems = []
  try:
    parse_profile_steps(config.get("profile_steps", ""))
  except ValueError as e:
    problems.append(str(e))
  if int(config.get("profile_request_steps", 5)) < 1:
    problems.append(
      f"profile_request_steps must be >= 1, got {config.get('profile_request_steps')!r}"
    )
  if not float(config.get("slow_step_factor", 3.0)) >= 0:
    problems.append(f"slow_step_factor must be >= 0, got {config.get('slow_step_factor')!r}")
  return problems


def from_config(config, workdir: str | os.PathLike) -> StepProfiler:
  """The StepProfiler a program's config asks for (`add_config_keys`)."""
  return StepProfiler(
    workdir,
    steps=config.get("profile_steps", ""),
    all_processes=bool(config.get("profile_all_processes", False)),
    request_steps=int(config.get("profile_request_steps", 5)),
  )


class StepProfiler:
  """Starts and stops `jax.profiler` traces around the loop's steps (module docstring).

    Before a step's body the loop asks `due(step)` and calls `start` when it says so; after the
  body, `end(step)`; at the end, `close()`.
  """

  def __init__(
    self,
    workdir: str | os.PathLike,
    steps: str = "",
    all_processes: bool = False,
    request_steps: int = 5,
    poll_seconds: float = 10.0,
  ):
    self.window = parse_profile_steps(steps)
    self.lead = jax.process_index() == 0
    self.active = self.lead or all_processes
    self.logdir = os.fspath(paths.path(workdir) / layout.TENSORBOARD_DIR)
    self.request_file = paths.path(workdir) / layout.PROFILE_REQUEST_FILE
    self.request_steps = request_steps
    self.poll_seconds = poll_seconds
    self._polled: float | None = None  # None: the first step (not traced on request)
    self._signalled = False
    self._until: int | None = None  # the last step of the trace being taken
    self.traced: list[tuple[int, int]] = []  # the windows taken: (first, last)
    self._first = 0
    self._previous_handler = None
    if threading.current_thread() is threading.main_thread():
      self._previous_handler = signal.signal(REQUEST_SIGNAL, self._on_signal)

  @property
  def tracing(self) -> bool:
    return self._until is not None

  def _on_signal(self, signum, frame) -> None:
    self._signalled = True

  def _requested(self) -> int:
    """Steps asked for by the signal or the request file since the last look (0: none)."""
    if self._signalled:
      self._signalled = False
      return self.request_steps
    if self._polled is None:  # the first step compiles: look from the next one on
      self._polled = -float("inf")
      return 0
    if not self.lead or time.monotonic() - self._polled < self.poll_seconds:
      return 0
    self._polled = time.monotonic()
    try:
      if not self.request_file.exists():
        return 0
      text = self.request_file.read_text().strip()
      self.request_file.unlink(missing_ok=True)
    except OSError as e:
      log.warning("could not take the profile request %s: %s", self.request_file, e)
      return 0
    if text and not text.isdigit():
      log.warning("%s holds %r, not a number of steps: profiling %d", self.request_file, text,
                  self.request_steps)  # fmt: skip
    return int(text) if text.isdigit() and int(text) > 0 else self.request_steps

  def due(self, step: int) -> int | None:
    """The last step of a trace to start at `step` (a window opens or a request came), or None.
    Cheap: a few comparisons, and a look for the request file every `poll_seconds`."""
    if self.tracing:
      return None
    count = self._requested()
    if self.window and self.window[0] == step:
      last = self.window[1]
    elif count:
      last = step + count - 1
    else:
      return None
    return last if self.active else None

  def start(self, step: int, last: int) -> None:
    """Start tracing steps `step`..`last`."""
    jax.profiler.start_trace(self.logdir)
    self._first, self._until = step, last
    log.info("profiling steps %d..%d into %s", step, last, self.logdir)

  def annotation(self, step: int):
    """The step's trace annotation (only while tracing; None otherwise)."""
    return jax.profiler.StepTraceAnnotation("train", step_num=step) if self.tracing else None

  def end(self, step: int, last: bool = False) -> bool:
    """Stop the trace after its last step (or the loop's `last`); True when it stopped."""
    if not self.tracing or (step < self._until and not last):
      return False
    self._stop(step)
    return True

  def _stop(self, step: int) -> None:
    jax.block_until_ready(jax.live_arrays())  # the window's device work is in the trace
    jax.profiler.stop_trace()
    self.traced.append((self._first, step))
    self._until = None
    log.info(
      "profile of steps %d..%d written to %s (tensorboard --logdir %s)",
      self._first,
      step,
      os.path.join(self.logdir, "plugins", "profile"),
      self.logdir,
    )

  def close(self) -> None:
    if self.tracing:
      self._stop(self._first)
    if self._previous_handler is not None:
      signal.signal(REQUEST_SIGNAL, self._previous_handler)
      self._previous_handler = None
