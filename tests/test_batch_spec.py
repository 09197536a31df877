"""A program's batch stated once (albert_flax.train.batch_spec): the abstract batch compile-only
hands the compiler is laid out as the run's global batches, and the checks name what is wrong."""

import numpy as np
import pytest

from albert_flax import sharding
from albert_flax.train import batch_spec
from pretrain import spec as pretrain_spec


def test_abstract_batch_is_laid_out_as_the_runs_batches():
  mesh = sharding.make_mesh(2, 2, 2)
  fields = pretrain_spec.batch_spec(8, 16, 4)
  abstract = batch_spec.abstract_batch(fields, mesh)
  assert list(abstract) == list(pretrain_spec.BATCH_KEYS)
  for name, field in fields.items():
    assert abstract[name].shape == field.shape and abstract[name].dtype == field.dtype
    run = sharding.batch_sharding(mesh, len(field.shape))  # what sharding.global_batch uses
    assert abstract[name].sharding.is_equivalent_to(run, len(field.shape)), name


def test_checks_name_the_field_and_the_setting():
  fields = pretrain_spec.batch_spec(2, 8, 3)
  batch = {name: np.zeros(f.shape, f.dtype) for name, f in fields.items()}
  batch_spec.check_batch(fields, batch)
  with pytest.raises(ValueError, match="'masked_lm_ids' has shape \\(2, 4\\), expected \\(2, 3\\)"):
    batch_spec.check_batch(fields, dict(batch, masked_lm_ids=np.zeros((2, 4), np.int32)))
  with pytest.raises(ValueError, match="lacks 'sentence_order_label'"):
    batch_spec.check_batch(fields, {k: v for k, v in batch.items() if k != "sentence_order_label"})
  mesh = sharding.make_mesh(4, 2, 1)
  batch_spec.check_fits_mesh(mesh, 16, grad_accum_steps=2)
  with pytest.raises(ValueError, match="eval_batch_size 12 must be a multiple of 8 batch shards"):
    batch_spec.check_fits_mesh(mesh, 12, key="eval_batch_size")
  with pytest.raises(ValueError, match="batch_size 24 must be a multiple of grad_accum_steps 2"):
    batch_spec.check_fits_mesh(mesh, 24, grad_accum_steps=2)
