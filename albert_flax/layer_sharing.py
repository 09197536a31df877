"""Cross-layer sharing strategies (`AlbertConfig.cross_layer_sharing`, the paper's Table 4).

The encoder stays one `nn.scan` over depth whatever the strategy. What the strategy shares is
broadcast into every step ("params", as ALBERT's single layer is); what it keeps per layer lives
in "params" too, at the same path "all" gives it, with a leading [num_hidden_layers] axis (logical
axis name "layers"):

    cross_layer_sharing  shared (one copy)          per layer ([L, ...] arrays)
    "all"                attention block, FFN block  (nothing)
    "attention"          attention block             FFN block
    "ffn"                FFN block                   attention block
    "none"               (nothing)                   attention block, FFN block

where the attention block is `attention/*` (query, key, value, dense, attention/LayerNorm) and
the FFN block `ffn`, `ffn_output` and `full_layer_layer_norm` of `albert_layers_0`.

`nn.scan` chooses broadcast or stacked per variable collection, not per parameter, so around
the scan the per-layer parameters move into their own collections (`PER_LAYER`) and the scan
stacks those (`variable_axes`); inside each step the layer sees one "params" tree again. Both
moves are `nn.map_variables` with the functions below, inverse to each other, so the layer code
is the same for every strategy. Initializing, each step folds its index into the keys of its
per-layer weights (`modeling._normal`): the layers start different, as separate layers would.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
from flax import traverse_util
from flax.core import unfreeze

from albert_flax import precision
from albert_flax.config import AlbertConfig

# Each collection the scan broadcasts -> the collection its per-layer part is stacked in.
PER_LAYER: dict[str, str] = {
  "params": "per_layer_params",
  precision.COMPUTE_COPIES: "per_layer_compute_copies",
}
# The logical name of the stacked axis (a rule in `albert_flax.sharding.LOGICAL_RULES`).
LAYERS_AXIS = "layers"

# The two blocks of a layer -> the names of its children (`modeling.AlbertLayer`) they own.
BLOCKS: dict[str, tuple[str, ...]] = {
  "attention": ("attention",),  # query, key, value, dense and attention/LayerNorm
  "ffn": ("ffn", "ffn_output", "full_layer_layer_norm"),
}
_PER_LAYER_BLOCKS: dict[str, tuple[str, ...]] = {
  "all": (),
  "attention": ("ffn",),
  "ffn": ("attention",),
  "none": ("attention", "ffn"),
}


def per_layer_blocks(config: AlbertConfig) -> tuple[str, ...]:
  """The blocks ("attention", "ffn") that have one copy per layer under the config's strategy."""
  return _PER_LAYER_BLOCKS[config.cross_layer_sharing]


def _per_layer_children(config: AlbertConfig) -> frozenset[str]:
  return frozenset(name for block in per_layer_blocks(config) for name in BLOCKS[block])


def is_per_layer(config: AlbertConfig, path: tuple[str, ...]) -> bool:
  """Whether the parameter at `path` in the full tree (e.g. ("albert", "encoder",
  "albert_layer_groups_0", "albert_layers_0", "ffn", "kernel")) is stacked [L, ...]."""
  for i, part in enumerate(path[:-1]):
    if part.startswith("albert_layer_groups_"):
      return len(path) > i + 2 and path[i + 2] in _per_layer_children(config)
  return False


def is_stacked(path: Sequence[str], ndim: int) -> bool:
  """Whether a parameter holds per-layer weights [L, ...], from its path and rank alone (for code
  without the config, such as an optimizer): an encoder layer's kernels are [in, out] and its
  other parameters vectors, stacked they have one dim more."""
  if not any(name.startswith("albert_layers_") for name in path):
    return False
  return ndim == (3 if path[-1] == "kernel" else 2)


def split_per_layer(variables: dict[str, Any], config: AlbertConfig) -> dict[str, Any]:
  """A scanned group's variables -> the same with each per-layer parameter moved from its
  collection to that collection's `PER_LAYER` one (same path). Paths are relative to the group:
  ("albert_layers_0", "ffn", "kernel")."""
  children = _per_layer_children(config)
  out = dict(variables)
  for shared_name, stacked_name in PER_LAYER.items():
    if shared_name not in variables:
      continue
    flat = traverse_util.flatten_dict(unfreeze(variables[shared_name]))
    shared = {p: v for p, v in flat.items() if p[1] not in children}
    out[shared_name] = traverse_util.unflatten_dict(shared)
    out[stacked_name] = traverse_util.unflatten_dict(
      {p: v for p, v in flat.items() if p[1] in children}
    )
  return out


def merge_per_layer(variables: dict[str, Any]) -> dict[str, Any]:
  """The inverse of `split_per_layer`: each `PER_LAYER` collection back into its own."""
  out = dict(variables)
  for shared_name, stacked_name in PER_LAYER.items():
    stacked = out.pop(stacked_name, None)
    if not stacked:
      continue
    flat = traverse_util.flatten_dict(unfreeze(out.get(shared_name) or {}))
    flat.update(traverse_util.flatten_dict(unfreeze(stacked)))
    out[shared_name] = traverse_util.unflatten_dict(flat)
  return out


def _collections() -> tuple[str, ...]:
  return tuple(PER_LAYER) + tuple(PER_LAYER.values())


def merged_view(body: type[nn.Module], config: AlbertConfig) -> type[nn.Module]:
  """The scan body seeing one "params" tree: the step's slice of each per-layer parameter
  merged with the shared ones; what it creates (init) is split back."""
  return nn.map_variables(
    body,
    _collections(),
    trans_in_fn=merge_per_layer,
    trans_out_fn=functools.partial(split_per_layer, config=config),
    mutable=True,
  )


def split_view(scanned: type[nn.Module], config: AlbertConfig, cast: bool) -> type[nn.Module]:
  """The scanned group seen from outside: one "params" tree, the per-layer parameters [L, ...]
  at their paths. `cast`: also make the compute-dtype copies of the kernels (shared and
  stacked alike), once per call before the loop (`precision.with_compute_copies`)."""

  def trans_in(variables):
    if cast:
      variables = precision.with_compute_copies(variables, dtype=config.compute_dtype)
      # The copies take no gradient (`precision.dense_matmul` gives all of it to the master
      # kernel). Said to JAX, the backward loop builds no (zero) cotangent for the stacked
      # copies: otherwise an [L, ...] buffer per kernel, updated at every step.
      variables[precision.COMPUTE_COPIES] = jax.lax.stop_gradient(
        variables[precision.COMPUTE_COPIES]
      )
    return split_per_layer(variables, config)

  return nn.map_variables(
    scanned, _collections(), trans_in_fn=trans_in, trans_out_fn=merge_per_layer, mutable=True
  )
