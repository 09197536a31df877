"""The loop skeleton both programs share (albert_flax.train.loop.TrainLoop) on its own: what is
due, stops on SIGTERM / SIGINT, what it records, and cleanup on every exit. (The programs' own
tests run it with real checkpoints: test_reliability.py, test_chaos.py.)"""

import os
import signal

import pytest

from albert_flax.train.loop import TrainLoop


class _Run:
  """The run's status records (WorkdirRun's mark_* calls), kept in a list."""

  def __init__(self):
    self.marks = []

  def mark_running(self, step, total):
    self.marks.append(("running", step, total))

  def mark_interrupted(self, step, total, signal_name):
    self.marks.append(("interrupted", step, signal_name))


class _Resource:
  """A checkpoint manager or data iterator that says when it is waited for and closed."""

  def __init__(self, events, name):
    self.events, self.name = events, name

  def wait_until_finished(self):
    self.events.append(f"{self.name} saved")

  def close(self):
    self.events.append(f"{self.name} closed")


def test_a_signal_stops_the_loop_after_its_step_which_is_recorded_then_all_is_closed():
  run, events = _Run(), []
  handler = signal.getsignal(signal.SIGTERM)
  checkpoints, data = _Resource(events, "checkpoints"), _Resource(events, "data")
  with TrainLoop(run, 2, 10, checkpoints=[checkpoints], close=[data]) as loop:
    for step in loop:
      if step == 4:
        os.kill(os.getpid(), signal.SIGTERM)
      events.append((step, loop.due(3), loop.stopping))
  assert events == [
    (3, True, False),
    (4, False, True),  # the step it arrived in is the last: save there
    "checkpoints saved",
    "data closed",
    "checkpoints closed",
  ]
  assert loop.interrupted and loop.step == 4 and loop.signal_name == "SIGTERM"
  assert run.marks == [("running", 2, 10), ("interrupted", 4, "SIGTERM")]
  assert signal.getsignal(signal.SIGTERM) is handler  # restored


def test_a_signal_at_the_last_step_lets_the_run_finish():
  run, events = _Run(), []
  with TrainLoop(run, 0, 3, checkpoints=[_Resource(events, "checkpoints")]) as loop:
    for step in loop:
      if step == 3:
        os.kill(os.getpid(), signal.SIGINT)
      events.append((step, loop.due(2), loop.stopping))
  assert events[:3] == [(1, False, False), (2, True, False), (3, True, False)]
  assert not loop.interrupted and loop.step == 3 and loop.signal_name is None
  assert run.marks == [("running", 0, 3)]


def test_an_error_in_a_step_still_closes_everything():
  run, events = _Run(), []
  handler = signal.getsignal(signal.SIGINT)
  with pytest.raises(RuntimeError, match="boom"):
    with TrainLoop(run, 0, 5, [_Resource(events, "checkpoints")], [_Resource(events, "data")]):
      raise RuntimeError("boom")
  assert events == ["data closed", "checkpoints closed"]  # (no save is waited for)
  assert signal.getsignal(signal.SIGINT) is handler
  # A resumed run that is already at its last step does no step.
  with TrainLoop(run, 5, 5) as loop:
    assert list(loop) == [] and loop.step == 5 and not loop.interrupted
