"""Logical axis rules, the device mesh, and shardings of train state and batches.

Parameters and activations carry logical axis names (see `albert_flax.modeling`); `LOGICAL_RULES`
maps them onto the three mesh axes:

    data    pure data parallelism: batch split, parameters replicated
    fsdp    batch split AND parameters / optimizer state split (ZeRO-3 style)
    tensor  Megatron-style model parallelism: attention heads, FFN width and vocabulary split

The same program runs on 1 CPU, on 8 fake CPU devices, on several processes and on a TPU pod slice:
the mesh covers all devices of all processes and every array is a global `jax.Array`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
# The mesh axes a batch's leading dimension is split over.
BATCH_AXES = ("data", "fsdp")

# Logical axis name -> mesh axis (or axes, or None = replicated). Order matters: flax gives each
# mesh axis to the first logical axis of an array that claims it.
# "embedding" (E = 128) stays whole: the word table [vocab, E] is split over "tensor" by vocabulary
# only. Splitting E over "fsdp" too made the token gather's output (E split over fsdp) clash with
# the batch split (also over fsdp): XLA then replicated the gather ("Involuntary full
# rematerialization") and all-gathered the table every step. Whole, the table costs V*E*4 bytes
# (15 MB at V=30000) per tensor shard, and the gather is vocabulary-parallel (masked local lookups,
# one all-reduce of [batch, seq, E] over "tensor").
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
  # activations
  ("activation_batch", BATCH_AXES),
  ("activation_length", None),
  ("activation_hidden", None),  # hidden states are whole on every tensor shard (Megatron)
  ("activation_mlp", "tensor"),
  # parameters: tensor parallelism over heads / FFN width / vocabulary ...
  ("vocab", "tensor"),
  ("joined_kv", "tensor"),
  ("mlp", "tensor"),
  ("pooler_out", "tensor"),
  # ... and FSDP over the model width
  ("hidden", "fsdp"),
  ("embedding", None),  # see above
  ("positions", None),
  ("token_types", None),
  ("classes", None),
  ("norm", None),
  # The leading axis of per-layer weights (`AlbertConfig.cross_layer_sharing` other than "all"):
  # whole, since the scan over depth takes one layer's slice per step (split over a mesh axis,
  # each step would gather it from other devices).
  ("layers", None),
)


# ----------------------------------------------------------------------------------------- mesh


def resolve_mesh_shape(data: int, fsdp: int, tensor: int, num_devices: int) -> tuple[int, int, int]:
  """(data, fsdp, tensor) with at most one -1 replaced by the devices that remain.

  Raises ValueError when the sizes are not positive or do not multiply to `num_devices`.
  """
  shape = [int(data), int(fsdp), int(tensor)]
  free = [i for i, s in enumerate(shape) if s == -1]
  if len(free) > 1:
    raise ValueError(f"mesh (data, fsdp, tensor) = {tuple(shape)}: at most one axis may be -1")
  if any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"mesh (data, fsdp, tensor) = {tuple(shape)}: sizes must be positive or -1")
  fixed = math.prod(s for s in shape if s != -1)
  if free:
    if num_devices % fixed:
      raise ValueError(
        f"mesh (data, fsdp, tensor) = {tuple(shape)}: {num_devices} devices are "
        f"not a multiple of the fixed axes' product {fixed}"
      )
    shape[free[0]] = num_devices // fixed
  if math.prod(shape) != num_devices:
    raise ValueError(
      f"mesh (data, fsdp, tensor) = {tuple(shape)} needs {math.prod(shape)} "
      f"devices but {num_devices} are available; use -1 for one axis to take "
      "the remaining devices"
    )
  return tuple(shape)  # type: ignore[return-value]


def make_mesh(
  data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
  """A ("data", "fsdp", "tensor") mesh over `devices` (default: all devices of all processes).

  -1 for one axis takes the remaining devices. Axes are `Auto`: the compiler propagates shardings
  from the annotated inputs, outputs and constraints.

  On TPU the device order is topology aware (`tpu_device_mesh`): the innermost axis ("tensor")
  gets the closest chips, and with several slices (devices with different `slice_index`) the
  "data" axis spans the slices, the rest stays inside each slice. Elsewhere (CPU, GPU) the order
  comes from `jax.make_mesh`.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_mesh_shape(data, fsdp, tensor, len(devices))
  if devices[0].platform == "tpu":
    grid = tpu_device_mesh(shape, devices)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
  return jax.make_mesh(
    shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
  )


def tpu_device_mesh(shape: Sequence[int], devices: Sequence[jax.Device]) -> np.ndarray:
  """TPU devices arranged as a `shape` (data, fsdp, tensor) array for a Mesh.

  jax's mesh utilities map the logical axes onto the torus; when an axis cannot take whole
  physical axes (e.g. fsdp 8 x tensor 2 on a 4x8x8 v4 torus) they are allowed to split physical
  axes, which only costs some collective bandwidth, instead of refusing as `jax.make_mesh` does.
  Several slices: "data" is split as (slices, data / slices), the outer part over the data-center
  network (a hybrid mesh), so only the data-parallel gradient reduction crosses slices.

  Raises ValueError naming the problem when no arrangement exists.
  """
  from jax.experimental import mesh_utils

  shape = tuple(int(s) for s in shape)
  slices = sorted({getattr(d, "slice_index", 0) for d in devices})
  cores = {getattr(d, "core_on_chip", 0) for d in devices}
  kind = devices[0].device_kind
  if len(cores) > 1 and kind not in ("TPU v2", "TPU v3"):
    raise ValueError(
      f"{kind} devices come one per TensorCore here ({len(devices)} devices); meshes need one "
      "device per chip: for a topology description pass chip_config_name='megacore' "
      "(albert_flax.train.aot does)"
    )
  try:
    if len(slices) > 1:
      if shape[0] % len(slices):
        raise ValueError(
          f"mesh (data, fsdp, tensor) = {shape}: the data axis must be a multiple of the "
          f"{len(slices)} slices (it spans them)"
        )
      per_slice = (shape[0] // len(slices),) + shape[1:]
      return mesh_utils.create_hybrid_device_mesh(
        per_slice, (len(slices), 1, 1), devices, allow_split_physical_axes=True
      )
    try:  # whole physical axes per logical axis when possible: the fastest collectives
      return mesh_utils.create_device_mesh(shape, devices)
    except (ValueError, NotImplementedError, AssertionError):
      return mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
  except (NotImplementedError, AssertionError) as e:
    raise ValueError(
      f"cannot lay mesh (data, fsdp, tensor) = {shape} onto {len(devices)} {kind} devices in "
      f"{len(slices)} slice(s): {e}. Choose axis sizes that are products of the slice's torus "
      "dimensions (powers of 2 on every TPU slice)"
    ) from e


# ------------------------------------------------------------------------------ array shardings


def _axis_size(mesh: Mesh, axes: Any) -> int:
  if axes is None:
    return 1
  if isinstance(axes, str):
    return mesh.shape[axes]
  return math.prod(mesh.shape[a] for a in axes)


def fit_spec_to_shape(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
  """Drop mesh axes from the dims they do not divide (e.g. 2 SOP classes over tensor=4).

  A dim sharded over several mesh axes keeps the longest prefix of them that divides it; the
  dropped axes leave that dim replicated over them, which is always correct, only less split.
  """
  fitted = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    if axes is None or axes is PartitionSpec.UNCONSTRAINED:
      fitted.append(axes)
      continue
    names = (axes,) if isinstance(axes, str) else tuple(axes)
    while names and dim % _axis_size(mesh, names):
      names = names[:-1]
    fitted.append(None if not names else names[0] if len(names) == 1 else names)
  return PartitionSpec(*fitted)


def logical_to_sharding(
  logical: PartitionSpec | None,
  shape: Sequence[int],
  mesh: Mesh,
  rules: Sequence[tuple[str, Any]] = LOGICAL_RULES,
) -> NamedSharding:
  """Logical axis names of one array -> its NamedSharding on `mesh` (fitted to its shape)."""
  if logical is None or len(logical) == 0:
    return NamedSharding(mesh, PartitionSpec())
  if len(logical) != len(shape):
    raise ValueError(f"logical axes {tuple(logical)} do not match an array of shape {tuple(shape)}")
  spec = nn.logical_to_mesh_axes(tuple(logical), rules)
  return NamedSharding(mesh, fit_spec_to_shape(spec, shape, mesh))


def is_boxed(x: Any) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


def unbox(tree: Any) -> Any:
  """Strip flax partitioning boxes without adding sharding constraints.

  (`nn.meta.unbox` would constrain each value to its unfitted logical spec under a mesh.)
  """
  return jax.tree.map(
    lambda x: x.unbox(apply_constraint=False) if is_boxed(x) else x, tree, is_leaf=is_boxed
  )


def tree_shardings(
  abstract_boxed: Any, mesh: Mesh, rules: Sequence[tuple[str, Any]] = LOGICAL_RULES
) -> Any:
  """Shardings for the (unboxed) tree whose abstract, boxed form is `abstract_boxed`.

  `abstract_boxed` is typically `jax.eval_shape(init)` of something holding flax-partitioned
  params (params, a train state whose optimizer moments mirror the params); leaves without a
  box are replicated.
  """
  logical = nn.get_partition_spec(abstract_boxed)
  shapes = unbox(abstract_boxed)
  return jax.tree.map(
    lambda spec, leaf: logical_to_sharding(spec, leaf.shape, mesh, rules),
    logical,
    shapes,
    is_leaf=lambda x: isinstance(x, PartitionSpec),
  )


# ---------------------------------------------------------------------------------- batches


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
  """Leading (batch) dim split over ("data", "fsdp"), other dims whole, replicated over tensor."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def batch_split(mesh: Mesh) -> int:
  """How many ways a batch's leading dim is split (data * fsdp)."""
  return _axis_size(mesh, BATCH_AXES)


def process_batch_share(mesh: Mesh, global_batch_size: int) -> tuple[int, int]:
  """(share index, share count) of this process's rows of a global batch.

  Each process must feed exactly the rows its devices hold: with the tensor axis inside a process
  this is the usual 1/process_count share; when processes differ only along "tensor" they hold
  the same rows and get the same share index. Pass the result to the data pipeline as its
  process_index / process_count.
  """
  if global_batch_size % batch_split(mesh):
    raise ValueError(
      f"global batch size {global_batch_size} is not divisible by the "
      f"{batch_split(mesh)} batch shards of mesh {dict(mesh.shape)}"
    )
  index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch_size,))
  rows = sorted({(s[0].start or 0, s[0].stop or global_batch_size) for s in index_map.values()})
  start, stop = rows[0][0], rows[-1][1]
  covered = sum(b - a for a, b in rows)
  if covered != stop - start:
    raise ValueError(
      f"this process's devices hold non-contiguous batch rows {rows} on mesh "
      f"{dict(mesh.shape)}; order the mesh so each process's devices are adjacent"
    )
  local = stop - start
  return start // local, global_batch_size // local


def global_batch(
  local_batch: Mapping[str, np.ndarray], mesh: Mesh, global_batch_size: int
) -> dict[str, jax.Array]:
  """This process's rows of a batch -> global arrays sharded over the batch axes.

  Args:
    local_batch: name -> [local_batch, ...] numpy arrays, this process's share
      (`process_batch_share`).
    global_batch_size: the leading dim of the global arrays.
  """
  _, shares = process_batch_share(mesh, global_batch_size)
  out = {}
  for name, value in local_batch.items():
    value = np.asarray(value)
    if value.shape[0] * shares != global_batch_size:
      raise ValueError(
        f"batch field {name!r} has {value.shape[0]} rows on this process; expected "
        f"{global_batch_size // shares} (global batch {global_batch_size} over "
        f"{shares} process shares)"
      )
    out[name] = jax.make_array_from_process_local_data(
      batch_sharding(mesh, value.ndim), value, (global_batch_size,) + value.shape[1:]
    )
  return out
