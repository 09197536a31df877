"""The serving function every export format wraps: token ids in, named float32 outputs out.

    serve(params, input_ids, attention_mask, token_type_ids) -> {"logits": ...} (per model class)

Inputs are int32 [batch, seq] ([batch, choices, seq] for multiple choice); batch and seq stay
symbolic (`jax.export` shape polymorphism), so one artifact serves every batch size and every
length up to `max_position_embeddings`. The function goes through the model's own `apply` only:
it knows nothing of the parameter layout (sharing strategy, groups, quantized weights), so any
model class, any `cross_layer_sharing` and a `af.quantize`d model export alike.

`portable` traces it and rewrites the few operations a converter cannot take with
dynamic shapes (see `_select_index`): ONNX and LiteRT are converted from that trace, StableHLO and
the SavedModel from the function itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

# Output fields of each model class, in order (the artifact's output names).
OUTPUT_NAMES = {
  "AlbertModel": ("last_hidden_state", "pooler_output"),
  "AlbertForPreTraining": ("prediction_logits", "sop_logits"),
  "AlbertForMaskedLM": ("logits",),
  "AlbertForSequenceClassification": ("logits",),
  "AlbertForMultipleChoice": ("logits",),
  "AlbertForTokenClassification": ("logits",),
  "AlbertForQuestionAnswering": ("start_logits", "end_logits"),
}


def model_class_name(model: nn.Module) -> str:
  """The task model's class name, also for a quantized model (qwix wraps the class)."""
  for cls in type(model).__mro__:
    if cls.__name__ in OUTPUT_NAMES:
      return cls.__name__
  raise ValueError(
    f"cannot export {type(model).__name__}: not one of the model classes {sorted(OUTPUT_NAMES)}"
  )


def input_axes(model: nn.Module) -> tuple[str, ...]:
  """Names of the input dimensions: ("batch", "seq"), or ("batch", "choices", "seq")."""
  if model_class_name(model) == "AlbertForMultipleChoice":
    return ("batch", "choices", "seq")
  return ("batch", "seq")


def symbolic_shape_text(
  model: nn.Module, max_seq_length: int | None = None
) -> tuple[str, list[str]]:
  """("batch, seq", ["seq <= 512"]): the inputs' symbolic shape and its constraint, as
  `jax.export.symbolic_shape` and jax2tf's `polymorphic_shapes` take them."""
  longest = max_seq_length or model.config.max_position_embeddings
  if longest > model.config.max_position_embeddings:
    raise ValueError(
      f"max_seq_length {longest} exceeds the model's max_position_embeddings "
      f"{model.config.max_position_embeddings}"
    )
  return ", ".join(input_axes(model)), [f"seq <= {longest}"]


def input_specs(model: nn.Module, max_seq_length: int | None = None) -> list[jax.ShapeDtypeStruct]:
  """Three int32 specs with symbolic dimensions (one shared scope), seq <= the longest length
  (default: max_position_embeddings)."""
  text, constraints = symbolic_shape_text(model, max_seq_length)
  shape = jax.export.symbolic_shape(text, constraints=constraints)
  return [jax.ShapeDtypeStruct(shape, jnp.int32) for _ in INPUT_NAMES]


def serving_fn(model: nn.Module) -> Callable[..., dict[str, jax.Array]]:
  """serve(params, input_ids, attention_mask, token_type_ids) -> {output name: float32 array}.

  Positions are 0 .. seq-1 on every row (padding on the right, as ALBERT's absolute positions
  want); dropout is off.
  """
  names = OUTPUT_NAMES[model_class_name(model)]

  def serve(params, input_ids, attention_mask, token_type_ids):
    # arange + broadcast (the model's own default) lowers to what LiteRT takes with dynamic
    # shapes; a 2-D iota or a cumsum does not.
    seq = input_ids.shape[-1]
    positions = jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), input_ids.shape)
    out = model.apply(
      {"params": params}, input_ids, attention_mask, token_type_ids, positions, deterministic=True
    )
    return {name: jnp.asarray(getattr(out, name), jnp.float32) for name in names}

  return serve


def plain_params(params: Any) -> Any:
  """The parameter tree without flax's partitioning boxes (exporters want plain arrays)."""
  return nn.meta.unbox(params)


# --------------------------------------------------------------------------- portable trace


def portable(fn: Callable[..., Any], *avals: Any) -> Callable[..., list[Any]]:
  """`fn` (arrays -> a tuple of arrays) as a jaxpr evaluated with `_eval`'s rewrites: what the
  converters are given. Closed-over parameters reach the converter as constants (ONNX
  initializers).

  With `avals` (input specs) it is traced once, now: jax2onnx, which replaces Flax layers while
  it traces, then sees primitives only. Without, it is traced at each call on its arguments'
  shapes: jax2tf's symbolic dimensions are its own, and the trace must use them.
  """

  def trace(*specs):
    return jax.make_jaxpr(fn)(*specs)

  if avals:
    closed = trace(*avals)
    return lambda *args: _eval(closed.jaxpr, closed.consts, jax.tree.leaves(args))

  def traced(*args):
    closed = trace(*jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), args))
    return _eval(closed.jaxpr, closed.consts, jax.tree.leaves(args))

  return traced


def _eval(jaxpr, consts, args):
  """`jax.core.eval_jaxpr` with rewrites, recursing into nested jit calls.

  Converters lower each primitive with dynamic shapes their own way; LiteRT's has no dynamic
  gather, which JAX emits for `x[..., 0]` once `x` has symbolic dimensions (the QA head's
  start/end split). `_select_index` replaces such a gather by a mask-and-sum. Anything else is
  bound as it is.
  """
  env: dict[Any, Any] = {}

  def read(v):
    return v.val if isinstance(v, jex_core.Literal) else env[v]

  for var, value in zip(jaxpr.constvars, consts, strict=True):
    env[var] = value
  for var, value in zip(jaxpr.invars, args, strict=True):
    env[var] = value
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name in ("pjit", "jit") and "jaxpr" in eqn.params:
      inner = eqn.params["jaxpr"]
      outvals = _eval(inner.jaxpr, inner.consts, invals)
    elif name == "gather" and (selected := _select_index(eqn, invals)) is not None:
      outvals = [selected]
    elif _foldable(eqn, invals):
      # Index arithmetic on constants (jnp's negative-index handling): folded here, so the
      # gather below sees its indices as a constant.
      with jax.ensure_compile_time_eval(), eqn.ctx.manager:
        outvals = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
      if not eqn.primitive.multiple_results:
        outvals = [outvals]
    else:
      with eqn.ctx.manager:
        outvals = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
      if not eqn.primitive.multiple_results:
        outvals = [outvals]
    for var, value in zip(eqn.outvars, outvals, strict=True):
      env[var] = value
  return [read(v) for v in jaxpr.outvars]


_FOLD_LIMIT = 16  # elements: index arithmetic, never a weight


def _foldable(eqn, invals) -> bool:
  """Whether `eqn` computes a small constant from small constants (no sub-computations)."""
  return (
    not list(jex_core.jaxprs_in_params(eqn.params))
    and all(not isinstance(x, jax.core.Tracer) and np.size(x) <= _FOLD_LIMIT for x in invals)
    and all(
      isinstance(v.aval.shape, tuple)
      and all(isinstance(d, int) for d in v.aval.shape)
      and np.prod(v.aval.shape) <= _FOLD_LIMIT
      for v in eqn.outvars
    )
  )


def _select_index(eqn, invals) -> jax.Array | None:
  """x[..., i, ...] (one static index on one axis, symbolic sizes elsewhere) as
  sum(x * one_hot(i), axis): exact for finite floats, and static-shaped for every converter.
  None when the gather is anything else."""
  operand, indices = invals
  params = eqn.params
  dims = params["dimension_numbers"]
  if (
    isinstance(indices, jax.core.Tracer)
    or not jnp.issubdtype(operand.dtype, jnp.floating)
    or np.size(indices) != 1
    or len(dims.collapsed_slice_dims) != 1
    or tuple(dims.start_index_map) != tuple(dims.collapsed_slice_dims)
    or dims.operand_batching_dims
  ):
    return None
  axis = dims.collapsed_slice_dims[0]
  sizes = params["slice_sizes"]
  if sizes[axis] != 1 or any(
    sizes[d] is not operand.shape[d] and sizes[d] != operand.shape[d]
    for d in range(operand.ndim)
    if d != axis
  ):
    return None
  # The gather's output puts the kept (offset) dimensions where offset_dims says; with one
  # collapsed axis and no batch dimensions that is the operand's order without `axis`.
  if tuple(dims.offset_dims) != tuple(range(operand.ndim - 1)):
    return None
  index = int(np.asarray(indices).reshape(()))
  # A 1-D arange (symbolic length or not) is what LiteRT takes; a 2-D iota is not.
  one_hot = (jnp.arange(operand.shape[axis], dtype=jnp.int32) == index).astype(operand.dtype)
  shape = [1] * operand.ndim
  shape[axis] = operand.shape[axis]
  picked = jnp.sum(operand * one_hot.reshape(shape), axis)
  return picked
