"""`af.quantize(model, params)`: int8 weights through qwix, a model that runs like the float one.

    qmodel, qparams = af.quantize(model, params)            # weight-only int8
    out = qmodel.apply({"params": qparams}, input_ids)      # same call, same outputs (close)
    af.export(qmodel, qparams, "out", format="onnx")        # int8 weights in the artifact

qwix (google/qwix) is the maintained JAX quantization library (AQT's successor in Google's
stack; AQT is in maintenance): post-training quantization of a linen model by intercepting its
dot_general / einsum calls, with no change to the model code. That is what lets `quantize` know
little of the parameter layout (only which kernels are stacked per layer, below): every Dense
kernel the model's apply multiplies by is found by qwix whatever the sharing strategy. Weights
are int8 with one float32 scale per output channel (absmax). qwix leaves embedding lookups
alone; ALBERT-base's word table is a third of its parameters, so `_EmbeddingPtq` also quantizes
tables read with `jnp.take` (one scale per row), the lookup dequantizing only the rows it reads.

Under a `cross_layer_sharing` other than "all" the per-layer kernels are stacked [L, in, out]
and the encoder's `nn.scan` hands each step its [in, out] slice. qwix decides how to quantize a
kernel where the model multiplies by it, inside the step: per output channel of [in, out]. The
stacked kernels are quantized per layer and output channel instead (scales [L, 1, out]), so the
scan slices the scales like the kernels (`_per_layer`).

`activations=True` adds dynamic-range int8 activations (each GEMM's input quantized on the fly,
per token): integer GEMMs where the backend has them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from albert_flax import layer_sharing
from albert_flax.config import AlbertConfig
from albert_flax.install_hints import require


def _providers():
  qwix = require("qwix", "af.quantize")
  from qwix._src.core import qarray
  from qwix._src.providers import ptq
  from qwix._src.utils import flax_util

  class _EmbeddingPtq(qwix.PtqProvider):
    """qwix's PTQ plus int8 embedding tables: `jnp.take(table, ids, axis=0)` on a parameter
    reads int8 rows and their scales."""

    def take(self, a, indices, axis=None, **kwargs):
      rule, _ = self._get_current_rule_and_op_id("take")
      if rule is None or rule.weight_qtype is None or axis != 0:
        return jnp.take(a, indices, axis=axis, **kwargs)
      if isinstance(a, ptq.WithAux):
        table = a.array
      elif name := flax_util.find_param(a):
        how = qarray.HowToQuantize(qtype=rule.weight_qtype, channelwise_axes=(0,))
        table = ptq.create_quantized_param(name, a, how).array
      else:
        return jnp.take(a, indices, axis=axis, **kwargs)
      rows = jnp.take(table.qvalue, indices, axis=0, **kwargs)
      scales = jnp.take(table.scale, indices, axis=0, **kwargs)
      return rows.astype(scales.dtype) * scales

    def get_intercept_map(self):
      return super().get_intercept_map() | {"jax.numpy.take": self.take}

  return qwix, _EmbeddingPtq


def quantize(
  model: nn.Module,
  params: Any,
  *,
  activations: bool = False,
  embeddings: bool = True,
) -> tuple[nn.Module, Any]:
  """(qmodel, qparams): `model` with int8 weights, called as `qmodel.apply({"params": qparams},
  ...)` with the float model's arguments and outputs.

  Args:
    model: any task model (a linen Module of this package).
    params: its float parameters ({"params": ...} or the inner tree).
    activations: also quantize each GEMM's input to int8 on the fly (dynamic range).
    embeddings: also store the embedding tables in int8 (one scale per row).

  Returns:
    The quantized model (qwix's interception around `model`) and its parameters: int8 `qvalue`
    and float32 `scale` leaves in place of each kernel (and table).
  """
  qwix, embedding_ptq = _providers()
  if isinstance(params, dict) and set(params) == {"params"}:
    params = params["params"]
  params = nn.meta.unbox(params)
  rule = qwix.QuantizationRule(
    module_path=".*",
    weight_qtype=jnp.int8,
    act_qtype=jnp.int8 if activations else None,
  )
  provider = (embedding_ptq if embeddings else qwix.PtqProvider)([rule])
  qmodel = qwix.quantize_model(model, provider)
  # The quantized tree's structure, from an abstract init (nothing is computed or allocated).
  dummy = jnp.zeros((1, 1, 8) if _is_multiple_choice(model) else (1, 8), jnp.int32)
  abstract = jax.eval_shape(qmodel.init, jax.random.key(0), dummy)["params"]
  qparams = qwix.quantize_params(params, _per_layer(abstract, model.config))
  return qmodel, nn.meta.unbox(qparams)


def _per_layer(abstract: Any, config: AlbertConfig) -> Any:
  """`abstract` with each stacked kernel's quantization recipe moved one axis out, the layer
  axis added: channel c of a step's [in, out] slice is channel c + 1 of the stacked [L, in, out]
  array, and each layer keeps its own scales.

  The recipe (`WithAux.how`) is what qwix chose inside the scan step, for the slice; its
  `quantize_params` applies it to the whole stacked array, where it would put one scale per
  input row, shared by every layer ([1, in, 1]), which the scan cannot slice.
  """
  from qwix._src.providers import ptq

  flat = traverse_util.flatten_dict(abstract)
  for path, leaf in flat.items():
    if isinstance(leaf, ptq.WithAux) and layer_sharing.is_per_layer(config, path):
      how = leaf.how
      flat[path] = leaf.replace(
        how=dataclasses.replace(
          how,
          channelwise_axes=(0, *(a + 1 for a in how.channelwise_axes)),
          tiled_axes={a + 1: t for a, t in how.tiled_axes.items()},
        )
      )
  return traverse_util.unflatten_dict(flat)


def _is_multiple_choice(model: nn.Module) -> bool:
  return any(cls.__name__ == "AlbertForMultipleChoice" for cls in type(model).__mro__)


def size_in_bytes(params: Any) -> int:
  """Bytes the parameter arrays take (int8 leaves count 1 byte each)."""
  return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(params))


def dequantize(qmodel: nn.Module, qparams: Any) -> tuple[nn.Module, Any]:
  """(model, params): the float model `qmodel` wraps, with each int8 weight replaced by
  int8 value x scale (exactly the numbers the quantized model multiplies by)."""
  require("qwix", "af.quantize")
  from qwix._src.core import qarray
  from qwix._src.providers import ptq

  base = next(c for c in type(qmodel).__mro__ if c.__module__.startswith("albert_flax."))
  quantized = (ptq.WithAux, qarray.QArray)

  def restore(x):
    if isinstance(x, ptq.WithAux):
      x = x.array
    return qarray.dequantize(x) if isinstance(x, qarray.QArray) else x

  params = jax.tree.map(restore, qparams, is_leaf=lambda x: isinstance(x, quantized))
  return base(qmodel.config), params
