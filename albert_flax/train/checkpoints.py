"""Resumable training: orbax checkpoints of the train state with the data position, and SIGTERM.

`TrainCheckpointManager` keeps the last `max_to_keep` checkpoints of a run under one directory;
each holds the train state (sharded arrays, written by every process in parallel, asynchronously)
and, as JSON, the data iterator state of every process, so a resumed run sees the batches the
interrupted one would have seen, and each array's fingerprint (albert_flax.checkpoints.integrity),
checked on restore. Restoring takes the newest checkpoint that reads back and passes that check; a
corrupt newest one is moved aside with a warning and the previous one is used.

A checkpoint cut short (the process killed while writing) is never taken for a complete one:
orbax writes into a temporary directory and renames it only once everything is written (on
filesystems without atomic rename, e.g. GCS, it writes a commit marker instead).

`PreemptionGuard` turns SIGTERM (how TPU VMs and most schedulers announce preemption) and
SIGINT (Ctrl-C) into a request to save and stop at the next step boundary; with several
processes they agree on the step through JAX's preemption sync service.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import uuid
from typing import Any

import jax
import numpy as np

from albert_flax import paths, upstream
from albert_flax.checkpoints import integrity, short_reason
from albert_flax.workdir import DATA_ITEM, INTEGRITY_ITEM, STATE_ITEM

log = logging.getLogger(__name__)


def _allgather_json(obj: Any) -> list[Any]:
  """Every process's `obj` (JSON-serializable), in process order, on every process."""
  if jax.process_count() == 1:
    return [obj]
  from jax.experimental import multihost_utils

  raw = np.frombuffer(json.dumps(obj).encode("utf-8"), np.uint8)
  lengths = multihost_utils.process_allgather(np.array([raw.size], np.int32))
  padded = np.zeros(int(np.max(lengths)), np.uint8)
  padded[: raw.size] = raw
  gathered = multihost_utils.process_allgather(padded)
  return [
    json.loads(bytes(row[: int(n)]).decode("utf-8"))
    for row, n in zip(np.asarray(gathered), np.asarray(lengths).reshape(-1))
  ]


def same_on_all_processes(obj: Any) -> Any:
  """Process 0's `obj` (JSON-serializable) on every process.

  A decision that starts a collective operation (whether to save a checkpoint) must be the same
  on every process, or the processes wait at different barriers: take process 0's.
  """
  if jax.process_count() == 1:
    return obj
  return _allgather_json(obj)[0]


def _all_processes_agree(ok: bool) -> bool:
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils

  return bool(np.all(multihost_utils.process_allgather(np.array([ok], np.int32))))


def _barrier_prefix() -> str:
  """A name for one manager's barriers that no other manager shares (upstream.ORBAX_BARRIER_NAMES:
  orbax names an asynchronous save's barriers after the step only, and a barrier name may be
  waited on once, so fine-tuning's checkpoints/latest and checkpoints/best saving the same step
  would share one). Random, taken from process 0 so every process names the same barriers:
  managers are created on every process together (they are collective)."""
  return f"albert_ckpt_{same_on_all_processes(uuid.uuid4().hex[:16])}"


class TrainCheckpointManager:
  """Orbax CheckpointManager for (train state, per-process data iterator state).

  Args:
    directory: the checkpoints directory (created), local or gs://...; one subdirectory per
      saved step.
    max_to_keep: older checkpoints are deleted (after the newer one is complete).
    async_save: write in a background thread; the step loop goes on once arrays are copied
      off the devices.
    best_metric: keep the `max_to_keep` checkpoints with the highest `metrics[best_metric]`
      (given to `save`) instead of the newest ones: orbax's own best_fn / best_mode.
  All methods must be called by every process (they synchronize).
  """

  def __init__(
    self,
    directory: str | os.PathLike,
    max_to_keep: int = 3,
    async_save: bool = True,
    best_metric: str | None = None,
  ):
    import orbax.checkpoint as ocp

    self._ocp = ocp
    self.directory = paths.path(directory)  # an epath.Path, as orbax takes it
    self.best_metric = best_metric
    self._saved_metric: dict[int, float] = {}  # best_metric of the steps this process saved
    best = {}
    if best_metric is not None:
      best = dict(
        best_fn=lambda metrics: float(metrics[best_metric]),
        best_mode="max",
        keep_checkpoints_without_metrics=False,
      )
    options = ocp.CheckpointManagerOptions(
      **best,
      max_to_keep=max_to_keep,
      create=True,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
        barrier_sync_key_prefix=_barrier_prefix()
      ),
    )
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=(STATE_ITEM, DATA_ITEM, INTEGRITY_ITEM)
    )

  # ------------------------------------------------------------------------------ queries
  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best(self) -> tuple[int | None, float]:
    """(step, metric value) of the best checkpoint kept; (None, -inf) when there is none."""
    self._manager.wait_until_finished()  # an unfinished save has no metadata to read yet
    step = self._manager.best_step()
    if step is None:
      return None, -float("inf")
    if step in self._saved_metric:
      # Not re-read: upstream.ORBAX_BUCKET_METADATA (in a bucket, metadata() raises on a host
      # other than the primary after that host's own save).
      return step, self._saved_metric[step]
    metrics = self._manager.metadata(step).metrics or {}
    return step, float(metrics.get(self.best_metric, -float("inf")))

  # ------------------------------------------------------------------------------- save
  def save(
    self,
    step: int,
    state: Any,
    data_state: Any = None,
    force: bool = False,
    metrics: dict[str, float] | None = None,
  ) -> bool:
    """Start saving `state` and this process's `data_state` (JSON-serializable) as `step`.

    `metrics` (with `best_metric`) must be the same on every process (`same_on_all_processes`):
    which checkpoints are kept is decided from them. Returns False when a checkpoint of that
    step exists already.
    """
    if step in self._manager.all_steps():
      return False
    states = _allgather_json(data_state)
    # Fingerprints computed on the devices now (the state's buffers may be donated to the next
    # step), saved in the same checkpoint: committed together with the arrays or not at all.
    record = integrity.fingerprints(state)
    args = self._ocp.args.Composite(
      **{
        STATE_ITEM: self._ocp.args.StandardSave(state),
        DATA_ITEM: self._ocp.args.JsonSave({"process_count": len(states), "processes": states}),
        INTEGRITY_ITEM: self._ocp.args.JsonSave(record),
      }
    )
    saved = self._manager.save(step, args=args, force=force, metrics=metrics)
    if saved and metrics and self.best_metric in metrics:
      self._saved_metric[step] = float(metrics[self.best_metric])
    return saved

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  # ---------------------------------------------------------------------------- restore
  def restore(self, abstract_state: Any) -> tuple[Any, Any, int] | None:
    """(state, this process's data state, step) of the newest readable checkpoint, or None.

    Args:
      abstract_state: the state's tree of `jax.ShapeDtypeStruct`s with shardings
        (`training.abstract_with_shardings`); arrays come back in those shardings.
    A checkpoint that fails to read is moved to `<directory>.corrupt/` with a warning and the
    next older one is tried; if checkpoints exist but none reads, RuntimeError.
    The data state is None when the checkpoint was written by a different number of processes
    (the data position cannot be carried over; a warning says so).
    """
    self._manager.reload()
    steps = sorted(self._manager.all_steps(), reverse=True)
    failures = []
    for step in steps:
      try:
        items = {
          STATE_ITEM: self._ocp.args.StandardRestore(abstract_state),
          DATA_ITEM: self._ocp.args.JsonRestore(),
        }
        has_record = (self.directory / str(step) / INTEGRITY_ITEM).is_dir()
        if has_record:
          items[INTEGRITY_ITEM] = self._ocp.args.JsonRestore()
        restored = self._manager.restore(step, args=self._ocp.args.Composite(**items))
        if has_record:
          integrity.verify(
            restored[INTEGRITY_ITEM], restored[STATE_ITEM], f"checkpoint at step {step}"
          )
        error = None
      except Exception as e:  # orbax raises many types for unreadable files
        error = short_reason(e)
        upstream.remember_unreadable(self.directory / str(step))  # ORBAX_ABORTED_READS
      if _all_processes_agree(error is None):
        if failures:
          self._set_aside(failures)
        return restored[STATE_ITEM], self._own_data_state(restored[DATA_ITEM], step), step
      log.warning(
        "checkpoint at step %d in %s cannot be restored (%s); falling back to the previous one",
        step,
        self.directory,
        error or "failed on another process",
      )
      failures.append(step)
    if failures:
      raise RuntimeError(
        f"no checkpoint in {self.directory} can be restored (tried steps "
        f"{failures}); move the directory away to start afresh"
      )
    return None

  def _own_data_state(self, saved: Any, step: int) -> Any:
    if not saved or saved.get("process_count") != jax.process_count():
      log.warning(
        "checkpoint at step %d holds the data position of %s processes, this run has "
        "%d: the data starts afresh",
        step,
        (saved or {}).get("process_count"),
        jax.process_count(),
      )
      return None
    return saved["processes"][jax.process_index()]

  def _set_aside(self, steps: list[int]) -> None:
    """Move unreadable step directories out of the way (kept for inspection)."""
    if jax.process_index() == 0:
      aside = self.directory.parent / (self.directory.name + ".corrupt")
      aside.mkdir(parents=True, exist_ok=True)
      for step in steps:
        for found in self.directory.iterdir():
          if found.name.isdigit() and int(found.name) == step:
            target = aside / found.name
            if target.exists():
              target.rmtree()
            paths.move_tree(found, target)
            log.warning("moved unreadable checkpoint %s to %s", found.name, aside)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices("albert_flax_checkpoint_set_aside")
    self._manager.reload()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> TrainCheckpointManager:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class PreemptionGuard:
  """`with PreemptionGuard() as guard: ... if guard.should_stop(step): save; break`.

  SIGTERM (how schedulers and TPU VMs announce preemption) and SIGINT (Ctrl-C) both ask for a
  checkpoint and a stop at the next step boundary; a second Ctrl-C aborts at once
  (KeyboardInterrupt). The previous handlers are restored on exit.
  One process: the handlers set a flag. Several processes: the stop must happen at the same step
  on all of them, so the decision is `multihost_utils.reached_preemption_sync_point`, which JAX's
  distributed runtime drives from a SIGTERM on any process; a SIGINT is turned into a SIGTERM to
  the same process so that it travels the same way.
  """

  def __init__(self):
    self.requested = False
    self.signal_name: str | None = None
    self._previous: dict[int, Any] = {}

  def _handler(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: the user wants out now
    log.warning("received %s: saving a checkpoint and stopping at the next step", name)
    self.requested, self.signal_name = True, name
    if jax.process_count() > 1 and signum == signal.SIGINT:
      os.kill(os.getpid(), signal.SIGTERM)  # JAX's preemption notifier tells the others

  def __enter__(self) -> PreemptionGuard:
    import threading

    if threading.current_thread() is not threading.main_thread():
      return self  # signal handlers can only be set from the main thread
    # Several processes: JAX's runtime owns SIGTERM (it starts the preemption sync).
    signums = [signal.SIGINT] + ([signal.SIGTERM] if jax.process_count() == 1 else [])
    for signum in signums:
      self._previous[signum] = signal.signal(signum, self._handler)
    return self

  def should_stop(self, step: int) -> bool:
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils

    if multihost_utils.reached_preemption_sync_point(step):
      self.requested = True
      self.signal_name = self.signal_name or "SIGTERM"
      return True
    return False  # a local flag alone would stop this process without the others

  def __exit__(self, *exc) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}
