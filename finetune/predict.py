"""Prediction over whole evaluation sets, and their scores: `predict_set`, `Predictor` (what
prediction needs besides the parameters), `evaluate`."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from jax.sharding import Mesh

from albert_flax.train import training
from finetune import buckets as buckets_lib
from finetune.batching import device_batch, eval_plan, gather
from finetune.data import MODEL_INPUTS, num_rows
from finetune.tasks import EvalSet, Task


def _to_host(tree) -> dict[str, np.ndarray]:
  """Global output arrays -> whole numpy arrays on every process."""
  return {k: np.asarray(v) for k, v in gather(tree).items()}


# Per-position outputs at padding positions: a score no real position has, whatever the
# padded length, so outputs with and without buckets are equal and no n-best slot goes to padding.
PADDING_SCORE = -1e9


def predict_set(
  predict_fn,
  params,
  eval_set: EvalSet,
  batch_size: int,
  mesh,
  buckets: tuple[int, ...] | None = None,
  sequence_outputs: tuple[str, ...] = (),
  compiles: buckets_lib.CompileCounter | None = None,
) -> dict[str, np.ndarray]:
  """head_outputs over a whole set, [N, ...] each, in the set's order.

  buckets: rows sorted by length, each batch padded to the smallest bucket that holds it, the
  outputs written back in the set's order; None: batches in order at full length.
  sequence_outputs: the per-position outputs [N, seq, ...] (padded back to full length; padding
  positions hold PADDING_SCORE either way).
  """
  inputs = {k: eval_set.features[k] for k in MODEL_INPUTS}
  n = num_rows(inputs)
  if n == 0:
    return {}
  full = inputs["input_ids"].shape[-1]
  merged: dict[str, np.ndarray] = {}
  for rows, real, width in eval_plan(inputs, batch_size, buckets):
    batch = buckets_lib.trim({k: v[rows] for k, v in inputs.items()}, width)
    if compiles is not None:
      compiles.record("predict", batch)
    out = _to_host(predict_fn(params, device_batch(batch, mesh, batch_size)))
    out = buckets_lib.pad_outputs(out, sequence_outputs, full, PADDING_SCORE)
    for k, v in out.items():
      if k not in merged:
        merged[k] = np.zeros((n,) + v.shape[1:], v.dtype)
      merged[k][rows[:real]] = v[:real]
  if sequence_outputs:
    padding = inputs["attention_mask"] == 0  # [N, seq]
    for k in sequence_outputs:
      merged[k][padding] = PADDING_SCORE
  return merged


@dataclasses.dataclass(frozen=True)
class Predictor:
  """What predicting over a set takes besides the parameters: the jitted prediction step, the
  mesh, the global eval batch size, the run's buckets (None: full length), the task's
  per-position outputs and the counter of compiled shapes."""

  predict_fn: training.MeshFunction
  mesh: Mesh
  batch_size: int
  buckets: tuple[int, ...] | None
  sequence_outputs: tuple[str, ...] = ()
  compiles: buckets_lib.CompileCounter | None = None

  def __call__(self, params, eval_set: EvalSet) -> dict[str, np.ndarray]:
    """head_outputs over the whole set, [N, ...] each (`predict_set`)."""
    return predict_set(
      self.predict_fn,
      params,
      eval_set,
      self.batch_size,
      self.mesh,
      buckets=self.buckets,
      sequence_outputs=self.sequence_outputs,
      compiles=self.compiles,
    )


def evaluate(
  task: Task, predictor: Predictor, params, sets: list[EvalSet]
) -> tuple[dict[str, float], dict[str, Any]]:
  """("<set>/<metric>" -> value, set name -> predictions)."""
  results, predictions = {}, {}
  for eval_set in sets:
    outputs = predictor(params, eval_set)
    scores, predictions[eval_set.name] = task.score(eval_set, outputs)
    results.update({f"{eval_set.name}/{k}": float(v) for k, v in scores.items()})
  return results, predictions
