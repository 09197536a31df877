"""The fine-tuning batches: training batches as a function of (seed, step), padded to the run's
length buckets; batches every process builds in full -> the step's global batch; the order in
which an evaluation set is predicted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import numpy as np

from albert_flax import sharding
from finetune import buckets as buckets_lib
from finetune.data import Features, num_rows, train_batches


def run_buckets(config, train_lengths: np.ndarray) -> tuple[int, ...] | None:
  """The run's padded lengths: config.length_buckets, or by default fitted to the training
  rows' lengths ([rows], `buckets.row_lengths`); None when config.length_buckets is empty
  (every batch padded to max_seq_length)."""
  spec = config.get("length_buckets")
  if spec is not None and len(spec) == 0:
    return None
  return buckets_lib.resolve_buckets(spec, config.max_seq_length, train_lengths)


@dataclasses.dataclass(frozen=True)
class TrainBatches:
  """The run's training batches, a function of (seed, step): resuming at a step replays the
  same sequence. buckets None: every batch at full width; else each padded to its bucket."""

  columns: Features  # model inputs and targets of every training row [N, ...]
  batch_size: int
  seed: int
  buckets: tuple[int, ...] | None

  def iterate(self, start_step: int) -> Iterator[Features]:
    """The batches from `start_step` on."""
    if self.buckets is None:
      return train_batches(self.columns, self.batch_size, seed=self.seed, start_step=start_step)
    return buckets_lib.bucketed_train_batches(
      self.columns, self.batch_size, self.seed, self.buckets, start_step=start_step
    )

  def widths(self, steps: range) -> list[int]:
    """The padded widths the batches of `steps` will have (compile_ahead compiles each)."""
    if self.buckets is None:
      return [self.columns["input_ids"].shape[-1]]
    lengths = buckets_lib.row_lengths(self.columns)
    return buckets_lib.train_widths(
      lengths, self.batch_size, self.buckets, self.seed, steps.start, steps.stop
    )


class TrainBatchMaker:
  """Training rows (every row, on every process) -> the train step's global batch: this
  process's rows and the per-row weights. `example`: the first `batch_size` rows of `columns`,
  the shapes compile_ahead compiles for."""

  def __init__(self, columns: Features, batch_size: int, mesh):
    self.batch_size, self.mesh = batch_size, mesh
    rows = np.arange(batch_size) % num_rows(columns)
    self.example = {k: v[rows] for k, v in columns.items()}

  def __call__(self, batch: Features) -> dict[str, jax.Array]:
    batch = dict(batch, weights=np.ones((self.batch_size,), np.float32))
    return device_batch(batch, self.mesh, self.batch_size)


def device_batch(batch: Features, mesh, global_size: int) -> dict[str, jax.Array]:
  """A batch every process built in full -> the step's global batch (this process's rows)."""
  index, count = sharding.process_batch_share(mesh, global_size)
  local = global_size // count
  rows = {k: v[index * local : (index + 1) * local] for k, v in batch.items()}
  return sharding.global_batch(rows, mesh, global_size)


def eval_plan(
  inputs: Features, batch_size: int, buckets: tuple[int, ...] | None
) -> list[buckets_lib.EvalBatch]:
  """The prediction batches of a set: rows sorted by length into their buckets' widths, or
  (buckets None) in order at full length."""
  n = num_rows(inputs)
  if buckets:
    return buckets_lib.eval_batch_plan(buckets_lib.row_lengths(inputs), batch_size, buckets)
  full = (inputs["input_ids"].shape[-1],)
  return buckets_lib.eval_batch_plan(np.zeros(n, np.int64), batch_size, full)


def gather(tree):
  """Global arrays -> numpy on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)
