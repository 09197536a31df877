"""Where a run's wall time goes, over every start of it: goodput and its losses.

    ledger = GoodputLedger(workdir)            # first thing in a start: the clock runs from here
    with ledger.phase("restore"):
      state = checkpoints.restore(...)
    ledger.loop_starts(step)                   # TrainLoop does this and what follows
    ...   ledger.switch("productive"); with ledger.phase("evaluation"): ...
    ledger.close(step, "finished")             # goodput.json, run_status.json, the table

At every moment exactly one part is being charged (a state machine: `switch`, `phase`), so the
parts of a start add up to its wall time. Compilation is measured where it happens, whatever
part is being charged: jax reports each trace, lowering, XLA compile and compilation-cache read
(`jax.monitoring` duration events), and their union is moved from that part to "compile".

Parts (seconds):
  productive             training steps (host clocks, from one step's start to the next's),
                         less the other parts that happened inside them
  compile                tracing, lowering, compiling, reading compiled programs from the cache
  input_wait             the input pipeline's next() in the loop
  evaluation             evaluation (its compilation excluded)
  checkpoint_save        the blocking part of checkpoint saves, and waiting for them at the end
  restore                reading the checkpoint a start resumes from
  profile                finishing a profile window (waiting for its steps, writing the trace)
  other                  setting up (tokenizer, data, model, train state) and finishing (the
                         final model) a start, outside the steps
  lost_to_interruptions  the productive time of steps done again after a resume: the steps
                         between the checkpoint resumed from and the step the start before
                         reached, at that start's mean productive step time (moved out of
                         "productive"; 0 after a SIGTERM, which saves the step it stops at)

Every start's record goes to workdir/goodput.json (albert_flax.workdir.GOODPUT_FILE) at most
every `persist_seconds` and when it ends, so a start killed outright leaves its record up to a
few seconds before the kill; the totals over the starts go into run_status.json ("goodput") and
a table in the log when a start ends. Only process 0 writes. The wall time of a start runs from
the ledger's creation (in train_and_evaluate, after the workdir lock is taken) to `close`:
importing jax and starting the process are before it.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import jax

from albert_flax import paths
from albert_flax import workdir as layout

log = logging.getLogger(__name__)

PARTS = (
  "productive",
  "compile",
  "input_wait",
  "evaluation",
  "checkpoint_save",
  "restore",
  "profile",
  "other",
  "lost_to_interruptions",
)
GOODPUT_FILE = layout.GOODPUT_FILE

# jax's duration events of compiling (jax._src.dispatch and jax._src.compiler); nested or
# overlapping ones count once (their union).
COMPILE_EVENTS = frozenset(
  {
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
    "/jax/compilation_cache/cache_retrieval_time_sec",
  }
)

_ledgers: weakref.WeakSet[GoodputLedger] = weakref.WeakSet()
_listening = False
_listener_lock = threading.Lock()


def _on_duration(event: str, duration_secs: float, **_: Any) -> None:
  if event in COMPILE_EVENTS:
    end = time.perf_counter()
    for ledger in list(_ledgers):
      ledger._compiled(end - duration_secs, end)


def _listen() -> None:
  """Register the compile listener once per process (jax keeps listeners for good)."""
  global _listening
  with _listener_lock:
    if not _listening:
      jax.monitoring.register_event_duration_secs_listener(_on_duration)
      _listening = True


def _union_within(intervals: list[tuple[float, float]], a: float, b: float) -> float:
  """Length of the union of `intervals` clipped to [a, b]."""
  if not intervals:
    return 0.0
  total, reach = 0.0, a
  for start, end in sorted(intervals):
    start, end = max(start, reach), min(end, b)
    if end > start:
      total += end - start
      reach = end
  return total


class GoodputLedger:
  """One start's accounting (module docstring), and the starts before it from goodput.json.

  Args:
    workdir: the run's workdir (local or gs://...).
    persist_seconds: write goodput.json at most this often while the run goes.
    enabled: write files and the table (default: process 0 only).
  """

  def __init__(
    self, workdir: str | os.PathLike, persist_seconds: float = 10.0, enabled: bool | None = None
  ):
    self.path = paths.path(workdir) / GOODPUT_FILE
    self.workdir = paths.path(workdir)
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.persist_seconds = persist_seconds
    self.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    self._began = self._since = time.perf_counter()
    self._current = "other"
    self._compiles: list[tuple[float, float]] = []
    self.parts = dict.fromkeys(PARTS, 0.0)
    self.previous: list[dict[str, Any]] = self._read_previous() if self.enabled else []
    self.from_step: int | None = None
    self.step: int | None = None
    self.redone_steps = 0
    self.status = "running"
    self._persisted = self._began
    self._ended: float | None = None  # close(): the clock stops
    _ledgers.add(self)
    _listen()

  # ------------------------------------------------------------------------------ charging
  def _compiled(self, start: float, end: float) -> None:
    self._compiles.append((start, end))

  def _charge(self, now: float) -> None:
    a = self._since
    compiled = _union_within(self._compiles, a, now)
    if self._compiles:
      self._compiles = [c for c in self._compiles if c[1] > now]
    self.parts["compile"] += compiled
    self.parts[self._current] += max(now - a - compiled, 0.0)
    self._since = now

  def switch(self, part: str) -> str:
    """Charge the time since the last switch to the current part; charge `part` from now on.
    Returns the part charged until now."""
    if part not in PARTS:
      raise ValueError(f"unknown goodput part {part!r}; parts: {PARTS}")
    self._charge(time.perf_counter())
    previous, self._current = self._current, part
    return previous

  @contextlib.contextmanager
  def phase(self, part: str) -> Iterator[None]:
    """Charge the block to `part`, then go back to what was charged before."""
    previous = self.switch(part)
    try:
      yield
    finally:
      self.switch(previous)

  def snapshot(self) -> dict[str, float]:
    """The parts so far (charged up to now), copied."""
    if self._ended is None:
      self._charge(time.perf_counter())
    return dict(self.parts)

  @property
  def wall(self) -> float:
    return (self._ended or time.perf_counter()) - self._began

  # ---------------------------------------------------------------------------- the loop
  def loop_starts(self, step: int) -> None:
    """The loop begins after `step` (the step resumed from, or 0): steps the start before
    reached beyond it are done again (their time is lost)."""
    self.from_step = self.step = int(step)
    if self.previous:
      before = self.previous[-1]
      reached = int(before.get("to_step") or 0)
      self.redone_steps = max(reached - self.from_step, 0)

  def step_done(self, step: int) -> None:
    """The loop reached `step`; persist now and then (a kill loses only the last seconds)."""
    self.step = int(step)
    if self.enabled and time.perf_counter() - self._persisted >= self.persist_seconds:
      self.persist()

  # --------------------------------------------------------------------------- records
  def record(self) -> dict[str, Any]:
    """This start's record: {"started", "wall", "parts", "from_step", "to_step", ...}."""
    parts = self.snapshot()
    lost = 0.0
    if self.redone_steps and self.previous:
      before = self.previous[-1]
      steps_before = int(before.get("to_step") or 0) - int(before.get("from_step") or 0)
      if steps_before > 0:
        lost = before["parts"].get("productive", 0.0) * self.redone_steps / steps_before
    return {
      "started": self.started,
      "wall": self.wall,
      "parts": parts,
      "from_step": self.from_step,
      "to_step": self.step,
      "redone_steps": self.redone_steps,
      "lost_before": lost,  # the start before's productive time of the redone steps
      "status": self.status,
    }

  def starts(self) -> list[dict[str, Any]]:
    """Every start's record, this one last."""
    return [*self.previous, self.record()]

  def totals(self) -> dict[str, Any]:
    """The parts summed over every start, the productive time of redone steps moved to
    lost_to_interruptions; with "wall", "goodput" (productive / wall) and "starts"."""
    starts = self.starts()
    parts = dict.fromkeys(PARTS, 0.0)
    for s in starts:
      for name, seconds in s["parts"].items():
        parts[name] = parts.get(name, 0.0) + seconds
      parts["lost_to_interruptions"] += s.get("lost_before", 0.0)
      parts["productive"] -= s.get("lost_before", 0.0)
    wall = sum(s["wall"] for s in starts)
    return {
      "wall": wall,
      "parts": parts,
      "goodput": parts["productive"] / wall if wall > 0 else 0.0,
      "starts": len(starts),
      "redone_steps": sum(s.get("redone_steps", 0) for s in starts),
    }

  def _read_previous(self) -> list[dict[str, Any]]:
    try:
      return list(paths.read_json(self.path).get("starts", []))
    except (OSError, ValueError, AttributeError):
      return []

  def persist(self) -> None:
    """Write goodput.json: every start's record and the totals (atomically)."""
    if not self.enabled:
      return
    self._persisted = time.perf_counter()
    record = {"starts": self.starts(), "totals": self.totals()}
    paths.write_json(self.path, record, indent=2, sort_keys=True)

  def close(self, step: int, status: str) -> dict[str, Any]:
    """End the start at `step` with `status` ("finished", "interrupted", "failed"): persist,
    add the totals to run_status.json, log the table. Returns the totals."""
    _ledgers.discard(self)
    self.step, self.status = int(step), status
    self.snapshot()
    self._ended = time.perf_counter()
    totals = self.totals()
    if self.enabled:
      self.persist()
      run_status = layout.read_run_status(self.workdir)
      if run_status is not None:
        run_status["goodput"] = totals
        layout.write_run_status(self.workdir, **run_status)
      log.info("goodput over %d start(s):\n%s", totals["starts"], format_table(totals))
    return totals


def format_table(totals: dict[str, Any]) -> str:
  """The totals as a text table: one row per part, seconds and share of the wall time."""
  wall = totals["wall"] or 1.0
  lines = [f"  {'part':<22}{'seconds':>10}{'share':>8}"]
  for name in PARTS:
    seconds = totals["parts"].get(name, 0.0)
    lines.append(f"  {name:<22}{seconds:>10.1f}{seconds / wall:>8.1%}")
  lines.append(f"  {'wall time':<22}{totals['wall']:>10.1f}{1:>8.0%}")
  lines.append(
    f"  goodput {totals['goodput']:.1%} over {totals['starts']} start(s), "
    f"{totals['redone_steps']} step(s) done again after interruptions"
  )
  return "\n".join(lines)
