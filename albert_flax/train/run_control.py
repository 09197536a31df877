"""One run per workdir: a lock, the config it was started with, and what state the run is in.

    with WorkdirRun(workdir, config, safe_keys=PRETRAIN_SAFE_KEYS) as run:
      if run.finished(total_steps): return run.status["results"]
      ...                                   # train; then one of
      run.mark_finished(step, results)      # run_status.json: "finished" (with the results)
      run.mark_interrupted(step, "SIGTERM") # "interrupted": rerun the same command to resume

- The lock (workdir/LOCK: host, pid, command) is taken by process 0 for the whole run (one lock
  per run, not per process); every process learns the outcome, so all fail together when another
  run holds it. It is released on any exit; a lock left by a process that no longer exists (on
  this host) is stale and taken over with a warning. Taking it is one atomic create-if-absent
  (`paths.create_new`): O_EXCL on a local disk, and in a bucket (workdir gs://...) an upload
  with the precondition ifGenerationMatch=0, which Cloud Storage refuses when the object exists,
  so of two runs starting at once exactly one gets the lock. A lock left in a bucket by a host
  that died cannot be checked from another host (its pid means nothing here): the message says
  to delete it.
- Small files (run_status.json, train_config.json) are replaced atomically (paths.write_json).
- A workdir that holds a run resumes only with the config it was started with, apart from keys
  that are safe to change (`safe_keys`; the step count may only grow): any other change is refused
  with the list of changed keys. Every start's config is kept in config_history/.
- run_status.json says "running" while a run works (a run killed outright stays "running"),
  "interrupted" after a SIGTERM / SIGINT stop, "finished" at the end: `af.from_pretrained` and
  reruns read it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from albert_flax import paths
from albert_flax import workdir as layout
from albert_flax.train import profiling
from albert_flax.train.checkpoints import same_on_all_processes
from albert_flax.train.mistakes import WorkdirBusyError

log = logging.getLogger(__name__)

# Keys a resumed run may change (besides a larger step count): they decide what is logged, how
# often, and where, never what is computed.
COMMON_SAFE_KEYS = (
  "log_every_steps",
  "eval_every_steps",
  "checkpoint_every_steps",
  "checkpoint_max_to_keep",
  "progress_bar",
  "tensorboard",
  "eval_batch_size",
  "export_hf",
  "data.num_workers",
  *profiling.CONFIG_KEYS,
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, Mapping):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def config_changes(
  old: Mapping[str, Any],
  new: Mapping[str, Any],
  safe_keys: Sequence[str],
  steps_key: str,
  defaults: Mapping[str, Any] | None = None,
) -> list[str]:
  """'key: old -> new' for every changed key that is not safe to change (sorted).

  defaults: the program's default config. A key absent from `old` (added to the package after
  that run started) at its default value is no change: every new key's default keeps what the
  package did before it existed (e.g. sentence_loss "sop").
  """
  a, b = _flatten(old), _flatten(new)
  default = _flatten(defaults or {})
  changes = []
  for key in sorted(set(a) | set(b)):
    if a.get(key, "<absent>") == b.get(key, "<absent>") or key in safe_keys:
      continue
    if key not in a and key in default and b.get(key) == default[key]:
      continue
    if key == steps_key and isinstance(a.get(key), int) and isinstance(b.get(key), int):
      if b[key] >= a[key]:
        continue
    changes.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
  return changes


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's process: alive
  return True


class WorkdirRun:
  """The run's hold on `workdir` (see the module docstring). Every process enters it."""

  def __init__(
    self,
    workdir: str | os.PathLike,
    config: Any,
    safe_keys: Sequence[str] = COMMON_SAFE_KEYS,
    steps_key: str = "num_train_steps",
    defaults: Any = None,
  ):
    self.workdir = paths.path(workdir)  # local or gs://...
    self.config_json = json.loads(config.to_json_best_effort(sort_keys=True))
    # The program's default config (a ConfigDict): keys added since a run started (config_changes)
    self.defaults_json = (
      json.loads(defaults.to_json_best_effort(sort_keys=True)) if defaults is not None else None
    )
    self.safe_keys = tuple(safe_keys) + (steps_key,)
    self.steps_key = steps_key
    self.lead = jax.process_index() == 0
    self._lock_path = self.workdir / layout.LOCK_FILE
    self._holding = False
    self.status: dict[str, Any] | None = None

  # ---------------------------------------------------------------------------- the lock
  def _take_lock(self) -> str | None:
    """None when taken, else the message naming the holder."""
    me = {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "since": time.strftime("%Y-%m-%d %H:%M:%S"),
      "command": " ".join(sys.argv),
    }
    for _ in range(2):
      if paths.create_new(self._lock_path, json.dumps(me).encode("utf-8")):
        self._holding = True
        return None
      try:
        holder = paths.read_json(self._lock_path)
      except (OSError, json.JSONDecodeError):
        holder = {}
      if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
        log.warning(
          "taking over the stale lock of process %s (no longer running) in %s",
          holder.get("pid"),
          self.workdir,
        )
        self._lock_path.unlink(missing_ok=True)
        continue
      return (
        f"{self.workdir} is in use by another run: process {holder.get('pid')} on "
        f"{holder.get('host')} since {holder.get('since')} ({holder.get('command')}). Wait for "
        f"it to end, or use another --workdir; if that run is gone, delete {self._lock_path}"
      )
    return f"could not take the lock {self._lock_path}"

  def _release_lock(self) -> None:
    if self._holding:
      self._holding = False
      self._lock_path.unlink(missing_ok=True)

  # ------------------------------------------------------------------------ enter / exit
  def __enter__(self) -> WorkdirRun:
    problem = None
    if self.lead:
      self.workdir.mkdir(parents=True, exist_ok=True)
      problem = self._take_lock()
    problem = same_on_all_processes(problem)
    if problem:
      raise WorkdirBusyError(problem)
    try:
      self.status = same_on_all_processes(layout.read_run_status(self.workdir))
      changes = same_on_all_processes(self._check_config() if self.lead else None)
      if changes:
        raise ValueError(
          f"{self.workdir} holds a run started with another config; changed keys:\n  "
          + "\n  ".join(changes)
          + "\nUse another --workdir, or set these back. Safe to change when resuming: "
          + ", ".join(self.safe_keys)
          + f" ({self.steps_key} may only grow)."
        )
      if self.lead:
        self._record_config()
    except BaseException:
      self._release_lock()
      raise
    return self

  def __exit__(self, *exc) -> None:
    self._release_lock()

  # --------------------------------------------------------------------------- config
  def _check_config(self) -> list[str]:
    path = self.workdir / layout.TRAIN_CONFIG_FILE
    if self.status is None or not path.is_file():
      return []  # nothing to resume: a fresh start
    old = paths.read_json(path)
    return config_changes(old, self.config_json, self.safe_keys, self.steps_key, self.defaults_json)

  def _record_config(self) -> None:
    text = json.dumps(self.config_json, indent=2, sort_keys=True) + "\n"
    history = self.workdir / layout.CONFIG_HISTORY_DIR
    history.mkdir(parents=True, exist_ok=True)
    n = len(list(history.glob("*.json"))) if history.is_dir() else 0
    paths.write_text(history / f"{n:04d}.json", text)
    paths.write_text(self.workdir / layout.TRAIN_CONFIG_FILE, text)

  # --------------------------------------------------------------------------- status
  def finished(self, total_steps: int) -> bool:
    """Whether the workdir holds a finished run of `total_steps` (a rerun has nothing to do)."""
    return bool(
      self.status
      and self.status.get("status") == layout.FINISHED
      and self.status.get("total_steps") == total_steps
    )

  def mark_running(self, step: int, total_steps: int) -> None:
    self._mark(layout.RUNNING, step, total_steps=total_steps)

  def mark_interrupted(self, step: int, total_steps: int, signal_name: str | None) -> None:
    self._mark(layout.INTERRUPTED, step, total_steps=total_steps, signal=signal_name)

  def mark_finished(self, step: int, total_steps: int, results: Mapping[str, Any]) -> None:
    self._mark(layout.FINISHED, step, total_steps=total_steps, results=dict(results))

  def _mark(self, status: str, step: int, **fields: Any) -> None:
    if self.lead:
      layout.write_run_status(self.workdir, status, step, **fields)
    self.status = {"status": status, "step": int(step), **fields}
