"""A program's batch, stated once: each field's global shape, dtype and logical axes.

Both programs describe their training batch as `{name: BatchField}` (pretrain.spec, and each
fine-tuning task's `batch_spec`); the same table gives compile-only mode its abstract arguments
(`abstract_batch`), checks the batches the data pipeline hands the step (`check_batch`), and the
check that a batch splits evenly over the mesh lives here (`check_fits_mesh`), once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from albert_flax import sharding

# The logical names of a batch's dimensions (`sharding.LOGICAL_RULES` maps them to mesh axes):
# rows split over the batch axes, every other dimension whole.
ROWS = "activation_batch"
LENGTH = "activation_length"


@dataclasses.dataclass(frozen=True)
class BatchField:
  """One array of a batch: global `shape` [rows, ...], `dtype`, a logical axis name (or None)
  per dimension."""

  shape: tuple[int, ...]
  dtype: Any
  axes: tuple[str | None, ...]

  def __post_init__(self):
    if len(self.axes) != len(self.shape):
      raise ValueError(f"axes {self.axes} do not match shape {self.shape}")


BatchSpec = Mapping[str, BatchField]


def abstract_batch(spec: BatchSpec, mesh: Mesh) -> dict[str, jax.ShapeDtypeStruct]:
  """The batch as ShapeDtypeStructs with their shardings on `mesh` (compile-only's arguments)."""
  return {
    name: jax.ShapeDtypeStruct(
      f.shape,
      f.dtype,
      sharding=sharding.logical_to_sharding(PartitionSpec(*f.axes), f.shape, mesh),
    )
    for name, f in spec.items()
  }


def check_batch(spec: BatchSpec, batch: Mapping[str, np.ndarray]) -> None:
  """Raise ValueError naming a field of `spec` that `batch` lacks or holds in another shape."""
  for name, f in spec.items():
    if name not in batch:
      raise ValueError(f"batch lacks {name!r}")
    if tuple(batch[name].shape) != f.shape:
      raise ValueError(
        f"batch field {name!r} has shape {tuple(batch[name].shape)}, expected {f.shape}"
      )


def check_fits_mesh(
  mesh: Mesh, batch_size: int, grad_accum_steps: int = 1, key: str = "batch_size"
) -> None:
  """Raise ValueError unless a global batch of `batch_size` rows splits into `grad_accum_steps`
  micro-batches, each split evenly over the mesh's batch axes (data x fsdp). key: the config
  key the error names."""
  split = sharding.batch_split(mesh)
  if batch_size % (split * grad_accum_steps):
    accum = f"grad_accum_steps {grad_accum_steps} x " if grad_accum_steps > 1 else ""
    raise ValueError(
      f"{key} {batch_size} must be a multiple of {accum}{split} batch shards "
      f"(data x fsdp of mesh {dict(mesh.shape)})"
    )
