"""The training loop's skeleton both programs share: steps, what is due, stops on request, cleanup.

    ledger = GoodputLedger(workdir)          # first: the start's wall time runs from here
    with ledger.phase("restore"):
      state = manager.restore(...)
    with TrainLoop(run, start, total, checkpoints=[manager], close=[batches], goodput=ledger,
                   rates=StepRates(flops_fn, batch_size), profiler=StepProfiler(...)) as loop:
      for step in loop:                      # start + 1 .. total: the step being done
        state, metrics = train_step(state, loop.next_batch(batches))
        if loop.due(log_every) or loop.stopping:
          writer.write(step, {**metrics, **loop.rates_row()})
        if loop.due(checkpoint_every) or loop.stopping:
          with loop.phase("checkpoint_save"):
            manager.save(step, state, batches.get_state())
      if not loop.interrupted:               # every save is complete here
        ...                                  # the final model, run.mark_finished(...)

- A stop requested by SIGTERM or SIGINT (`PreemptionGuard`) ends the loop after the step it is
  seen at (`loop.stopping` is true in that step's body: save there). A request at the last step
  lets the run finish. The decision is taken once per step, at the first question about it (with
  several processes it is a collective agreement on the step: every process asks at the same
  point of the same step).
- When the loop ends, by the last step or a stop, it waits for the `checkpoints`' saves to be
  complete; after a stop it records the interruption in the workdir (`run.mark_interrupted`) and
  logs how to resume.
- On every exit, an error included, the `checkpoints` and the objects in `close` are closed (in
  reverse order) and the signal handlers restored.
- With a `goodput` ledger (albert_flax.train.goodput) the loop charges its steps, their input
  waits (`next_batch`) and the program's `phase`s; it closes the ledger last (goodput.json, the
  table, run_status.json's "goodput"). With `rates` (albert_flax.train.perf.StepRates) each
  `rates_row()` gives the step time, rates, TFLOP/s, MFU, input-wait share and device memory of
  the steps since the last row, and a step slower than `slow_step_factor` x the recent median
  (not one that compiled, evaluated, saved or was profiled) is a warning. `steps_synced` says
  whether the program waits for every step's results (the step before's, while this one runs),
  making each step's host time its device time; when it does not (it waits at log steps only),
  slow steps are judged per logged interval instead. A `profiler`
  (albert_flax.train.profiling.StepProfiler) traces the steps asked for.
  None of it adds a wait for the device: host clocks around what the loop already does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from albert_flax.train.checkpoints import PreemptionGuard, TrainCheckpointManager
from albert_flax.train.goodput import GoodputLedger
from albert_flax.train.perf import SlowStepDetector, StepRates
from albert_flax.train.profiling import StepProfiler
from albert_flax.train.run_control import WorkdirRun

# Parts of a step's time that make it slow for a known reason (not judged as a slow step).
_EVENT_PARTS = ("compile", "evaluation", "checkpoint_save", "profile")

log = logging.getLogger(__name__)


class TrainLoop:
  """Steps `start + 1 .. total` of a run in `run`'s workdir (see the module docstring).

  Args:
    run: the run's hold on the workdir (marked running on entry, interrupted after a stop).
    start: the step the state is at (0, or the step of the checkpoint resumed from).
    total: the step the run ends at.
    checkpoints: checkpoint managers: their saves are waited for when the loop ends, and they
      are closed on exit.
    close: other objects with a `close()` method (data iterators, writers), closed on exit.
    goodput, rates, profiler, slow_step_factor, steps_synced: see the module docstring
      (slow_step_factor <= 0: no slow-step warnings).
  After the loop: `step` (the last step done), `interrupted`, `signal_name`, `goodput_totals`
  (after exit, with a ledger).
  """

  def __init__(
    self,
    run: WorkdirRun,
    start: int,
    total: int,
    checkpoints: Sequence[TrainCheckpointManager] = (),
    close: Sequence[Any] = (),
    goodput: GoodputLedger | None = None,
    rates: StepRates | None = None,
    profiler: StepProfiler | None = None,
    slow_step_factor: float = 3.0,
    steps_synced: bool = True,
  ):
    self.run = run
    self.start, self.total, self.step = start, total, start
    self.interrupted = False
    self._checkpoints = tuple(checkpoints)
    self._close = (*self._checkpoints, *close)
    self._stack = contextlib.ExitStack()
    self._guard: PreemptionGuard | None = None
    self._stopping: bool | None = None
    self.goodput, self.rates, self.profiler = goodput, rates, profiler
    self.slow_steps = SlowStepDetector(slow_step_factor)
    self.steps_synced = steps_synced
    self.goodput_totals: dict[str, Any] | None = None
    self._parts: dict[str, float] = {}  # the ledger's parts at the last accounting
    self._step_time = 0.0  # training time of the step so far
    self._step_excluded = False  # the step compiled, evaluated, saved or was profiled
    self._step_counted = False  # a row counted the step already (rates_row)
    self._interval_excluded = False  # (steps_synced=False) the interval had a compile, ...

  def __enter__(self) -> TrainLoop:
    with self._stack as stack:
      for resource in self._close:
        stack.callback(resource.close)
      self._guard = stack.enter_context(PreemptionGuard())
      if self.profiler is not None:
        stack.callback(self.profiler.close)
      self.run.mark_running(self.start, self.total)
      self._stack = stack.pop_all()  # entered: __exit__ closes them
    return self

  def __exit__(self, exc_type, *exc) -> None:
    try:
      self._stack.close()
    finally:
      if self.goodput is not None:
        if exc_type is not None:
          status = "failed"
        elif self.interrupted:
          status = "interrupted"
        else:
          status = "finished" if self.step == self.total else "stopped"
        self.goodput_totals = self.goodput.close(self.step, status)

  @property
  def signal_name(self) -> str | None:
    """The signal that stopped the run (None when it was not stopped)."""
    return self._guard.signal_name if self.interrupted else None

  def __iter__(self) -> Iterator[int]:
    if self.goodput is not None:
      self.goodput.loop_starts(self.start)
      self.goodput.switch("productive")
      self._parts = self.goodput.snapshot()
    for step in range(self.start + 1, self.total + 1):
      self.step, self._stopping = step, None
      self._step_begins(step)
      annotation = self.profiler.annotation(step) if self.profiler is not None else None
      if annotation is None:
        yield step
      else:
        with annotation:
          yield step
      self._step_ends(step)
      if self.stopping:
        self.interrupted = True
        break
    with self.phase("checkpoint_save"):
      for manager in self._checkpoints:
        manager.wait_until_finished()
    if self.goodput is not None:
      self.goodput.switch("other")
    if self.interrupted:
      self.run.mark_interrupted(self.step, self.total, self.signal_name)
      log.warning(
        "stopped at step %d on request (%s); rerun the same command to resume",
        self.step,
        self.signal_name,
      )

  # ------------------------------------------------------------------- time and rates
  def phase(self, part: str) -> contextlib.AbstractContextManager:
    """Charge the block to a goodput part ("evaluation", "checkpoint_save", ...); a no-op
    without a ledger."""
    return self.goodput.phase(part) if self.goodput is not None else contextlib.nullcontext()

  def next_batch(self, iterator: Iterator[Any]) -> Any:
    """next(iterator), its time charged to "input_wait", its rows and tokens to the rates."""
    with self.phase("input_wait"):
      batch = next(iterator)
    if self.rates is not None:
      self.rates.add_batch(batch)
    return batch

  def _step_begins(self, step: int) -> None:
    last = self.profiler.due(step) if self.profiler is not None else None
    if last is not None:
      with self.phase("profile"):
        self.profiler.start(step, last)

  def _step_ends(self, step: int) -> None:
    profiled = self.profiler is not None and self.profiler.tracing
    if profiled:
      with self.phase("profile"):
        self.profiler.end(step, last=step == self.total)
    if self.goodput is None:
      return
    self._account(count_step=not self._step_counted)
    excluded = profiled or self._step_excluded
    if self.steps_synced:
      self.slow_steps.observe(step, self._step_time, excluded)
    else:
      self._interval_excluded |= excluded
    self._step_time, self._step_excluded, self._step_counted = 0.0, False, False
    self.goodput.step_done(step)

  def _account(self, count_step: bool) -> None:
    """Add the training time since the last accounting to the step and the rates (the time
    since a row goes to the next row: a step's time is counted once, its step once)."""
    now = self.goodput.snapshot()
    spent = {k: now[k] - self._parts.get(k, 0.0) for k in now}
    self._parts = now
    self._step_excluded |= any(spent[k] > 0 for k in _EVENT_PARTS)
    training = spent["productive"] + spent["input_wait"]
    self._step_time += training
    if self.rates is not None:
      self.rates.add_interval(training, spent["input_wait"], steps=int(count_step))

  def rates_row(self) -> dict[str, float]:
    """The figures of the steps since the last row (albert_flax.train.perf.StepRates.row); {}
    without `rates`."""
    if self.rates is None:
      return {}
    if self.goodput is not None and not self._step_counted:
      self._account(count_step=True)  # the step so far is in this row
      self._step_counted = True
    steps = self.rates.steps
    row = self.rates.row()
    if not self.steps_synced and "step_time" in row:
      self.slow_steps.observe(self.step, row["step_time"], self._interval_excluded or steps < 1)
      self._interval_excluded = False
    return row

  def due(self, every: int) -> bool:
    """Whether something done every `every` steps is due at this step (or it is the last)."""
    return self.step % every == 0 or self.step == self.total

  @property
  def stopping(self) -> bool:
    """Whether this step is the last: a stop was requested (SIGTERM / SIGINT) and it is not the
    run's last step anyway. Save a checkpoint of this step when it is true."""
    if self._stopping is None:
      self._stopping = self._guard.should_stop(self.step) and self.step < self.total
    return self._stopping
