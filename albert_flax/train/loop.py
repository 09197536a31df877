"""The training loop's skeleton both programs share: steps, what is due, stops on request, cleanup.

    with TrainLoop(run, start, total, checkpoints=[manager], close=[batches]) as loop:
      for step in loop:                      # start + 1 .. total: the step being done
        state, metrics = train_step(state, next(batches))
        if loop.due(log_every) or loop.stopping:
          writer.write(step, metrics)
        if loop.due(checkpoint_every) or loop.stopping:
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
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from albert_flax.train.checkpoints import PreemptionGuard, TrainCheckpointManager
from albert_flax.train.run_control import WorkdirRun

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
  After the loop: `step` (the last step done), `interrupted`, `signal_name`.
  """

  def __init__(
    self,
    run: WorkdirRun,
    start: int,
    total: int,
    checkpoints: Sequence[TrainCheckpointManager] = (),
    close: Sequence[Any] = (),
  ):
    self.run = run
    self.start, self.total, self.step = start, total, start
    self.interrupted = False
    self._checkpoints = tuple(checkpoints)
    self._close = (*self._checkpoints, *close)
    self._stack = contextlib.ExitStack()
    self._guard: PreemptionGuard | None = None
    self._stopping: bool | None = None

  def __enter__(self) -> TrainLoop:
    with self._stack as stack:
      for resource in self._close:
        stack.callback(resource.close)
      self._guard = stack.enter_context(PreemptionGuard())
      self.run.mark_running(self.start, self.total)
      self._stack = stack.pop_all()  # entered: __exit__ closes them
    return self

  def __exit__(self, *exc) -> None:
    self._stack.close()

  @property
  def signal_name(self) -> str | None:
    """The signal that stopped the run (None when it was not stopped)."""
    return self._guard.signal_name if self.interrupted else None

  def __iter__(self) -> Iterator[int]:
    for step in range(self.start + 1, self.total + 1):
      self.step, self._stopping = step, None
      yield step
      if self.stopping:
        self.interrupted = True
        break
    for manager in self._checkpoints:
      manager.wait_until_finished()
    if self.interrupted:
      self.run.mark_interrupted(self.step, self.total, self.signal_name)
      log.warning(
        "stopped at step %d on request (%s); rerun the same command to resume",
        self.step,
        self.signal_name,
      )

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
