"""Checkpoints (latest for resumption, best by a metric) and metric output (metrics.jsonl,
TensorBoard, tqdm) of the fine-tuning loop.

Both are generic (nothing task specific); they live here until the library's training module
offers a checkpoint manager and metric writers, which the fine-tuning loop should then use.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Mapping

import jax
import numpy as np

log = logging.getLogger(__name__)


class CheckpointKeeper:
  """Two orbax CheckpointManagers under `directory`:

  latest/  the whole train state of the last evaluation (one kept): a rerun resumes there;
  best/    the parameters of the evaluation with the highest `metric` (one kept).
  Saves are asynchronous; `wait()` before reading them back.
  """

  def __init__(self, directory: str, metric: str):
    import orbax.checkpoint as ocp
    self._ocp = ocp
    self.directory = directory
    self.metric = metric
    self.latest = ocp.CheckpointManager(
        os.path.join(directory, "latest"),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
    self.best = ocp.CheckpointManager(
        os.path.join(directory, "best"),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True, best_mode="max",
                                             best_fn=lambda m: float(m[metric])))
    self.best_step = self.best.best_step()
    self.best_value = -math.inf
    if self.best_step is not None:
      self.best_value = float((self.best.metrics(self.best_step) or {}).get(metric, -math.inf))

  def restore_latest(self, state: Any, shardings: Any) -> Any:
    """The latest saved state (in `shardings`), or `state` itself when there is none."""
    step = self.latest.latest_step()
    if step is None:
      return state
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          state, shardings)
    return self.latest.restore(step, args=self._ocp.args.StandardRestore(target))

  def save(self, step: int, state: Any, metrics: Mapping[str, float]) -> None:
    """Save the state as latest; its params as best when `metrics[metric]` beats the best."""
    if self.metric not in metrics:
      raise KeyError(f"evaluation gave no {self.metric!r} (the best-checkpoint metric); it "
                     f"gave {sorted(metrics)}")
    self.latest.save(step, args=self._ocp.args.StandardSave(state), force=True)
    value = float(metrics[self.metric])
    if value > self.best_value or self.best_step is None:
      self.best.save(step, args=self._ocp.args.StandardSave(state.params),
                     metrics={k: float(v) for k, v in metrics.items()}, force=True)
      self.best_value, self.best_step = value, step

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def restore_best(self, params: Any, shardings: Any) -> Any:
    """The best parameters (in `shardings`); `params` when nothing was saved."""
    self.wait()
    step = self.best.best_step()
    if step is None:
      return params
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          params, shardings)
    return self.best.restore(step, args=self._ocp.args.StandardRestore(target))

  def close(self) -> None:
    self.latest.close()
    self.best.close()


class _NoProgress:
  def update(self, n: int = 1) -> None: ...
  def set_postfix(self, **kwargs: Any) -> None: ...
  def close(self) -> None: ...


class MetricWriter:
  """Scalars to workdir/metrics.jsonl (one {"step": ..., name: value} line per call) and to
  TensorBoard (workdir/tensorboard), on the lead process only."""

  def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    if enabled:
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    if enabled and tensorboard:
      try:
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      except ImportError:  # TensorBoard output is optional
        log.info("tensorboardX is not installed: no TensorBoard output")

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), **clean}, sort_keys=True) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for name, value in clean.items():
        self._tb.add_scalar(name, value, step)
      self._tb.flush()
    log.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in clean.items()))

  def progress(self, total: int, initial: int, enabled: bool = True):
    """A tqdm bar on the lead process (a no-op elsewhere or when disabled)."""
    if not (self.enabled and enabled):
      return _NoProgress()
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc="fine-tuning", unit="step")

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
