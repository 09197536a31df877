"""Compile-ahead: every program a fine-tuning run will need, compiled side by side before its first
step (config.compile_ahead)."""

from __future__ import annotations

import numpy as np

from albert_flax.train import training
from finetune import buckets as buckets_lib
from finetune.batching import TrainBatches, TrainBatchMaker, device_batch, eval_plan
from finetune.data import Features
from finetune.predict import Predictor


def compile_ahead(
  train_step: training.MeshFunction,
  state: training.TrainState,
  batches: TrainBatches,
  make_train_batch: TrainBatchMaker,
  predictor: Predictor,
  eval_inputs: list[Features],
  steps: range,
  seed: np.ndarray,
) -> tuple[int, list[int], list[int]]:
  """Compiles, side by side, the train-step programs of every padded width the batches of
  `steps` will have (`batches.widths`) and the prediction programs of the widths of
  `eval_inputs` (model inputs of each set, predicted as `predictor` does), before the first
  step: one compile after another at first use costs their sum, on a host's idle cores they
  overlap (XLA compiles each program on one thread or two). make_train_batch: full-width
  training rows [batch, ...] -> the train step's batch, as the loop makes it. seed: the train
  step's seed argument (`training.step_seed`). Returns (programs compiled, train widths,
  predict widths)."""
  train_widths = batches.widths(steps)
  jobs = [
    (train_step, (state, make_train_batch(buckets_lib.trim(make_train_batch.example, w)), seed))
    for w in train_widths
  ]
  predict_widths = set()
  for inputs in eval_inputs:
    for planned in eval_plan(inputs, predictor.batch_size, predictor.buckets):
      if planned.width not in predict_widths:
        predict_widths.add(planned.width)
        batch = buckets_lib.trim({k: v[planned.rows] for k, v in inputs.items()}, planned.width)
        batch = device_batch(batch, predictor.mesh, predictor.batch_size)
        jobs.append((predictor.predict_fn, (state.params, batch)))
  return training.compile_concurrently(jobs), train_widths, sorted(predict_widths)
