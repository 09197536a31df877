"""Mixed-precision building blocks: low-precision GEMMs with float32 accumulation, both ways.

With a compute dtype below float32 (bfloat16), every GEMM of the model takes compute-dtype
operands and accumulates in float32 (`preferred_element_type=jnp.float32`), which is what bf16
hardware (TPU MXU, AMX, AVX512-BF16, tensor cores) runs natively. JAX's own transpose of such a
dot multiplies the float32 cotangent by the compute-dtype operand, i.e. a float32 GEMM in the
backward pass; the custom VJPs here cast the cotangent to the compute dtype first, so the
backward GEMMs are compute-dtype GEMMs with float32 accumulation as well.

`dense_matmul` also routes the weight gradient, accumulated in float32, to the float32 master
kernel while the forward multiplies by a compute-dtype copy of it: the copy can then be made once
per step outside the scan over layers (`with_compute_copies`), and the scan's backward loop
still sums the shared kernel's gradient over the layers in float32.

`softmax_to` keeps the softmax in float32 but saves only its compute-dtype output for the
backward pass, so no float32 [batch, heads, seq, seq] stack is kept per layer.

In float32 these functions reduce to the plain ops (no custom VJP), so float32 results do not
move.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from jax import lax

Array = jax.Array

# The collection holding compute-dtype copies of a scanned group's kernels (same paths as in
# "params"), made once per step by `with_compute_copies`.
COMPUTE_COPIES = "compute_copies"


def _is_low_precision(dtype: Any) -> bool:
  return jnp.dtype(dtype) != jnp.float32


# --------------------------------------------------------------------------- dense


@jax.custom_vjp
def _dense_matmul_low(x: Array, kernel: Array, master: Array) -> Array:
  return lax.dot_general(
    x, kernel, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32
  )


def _dense_fwd(x, kernel, master):
  return _dense_matmul_low(x, kernel, master), (x, kernel, master)


def _dense_bwd(residuals, grad):
  x, kernel, master = residuals
  grad = grad.astype(kernel.dtype)
  d_x = lax.dot_general(
    grad, kernel, (((grad.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.float32
  )
  rows = tuple(range(x.ndim - 1))
  d_kernel = lax.dot_general(x, grad, ((rows, rows), ((), ())), preferred_element_type=jnp.float32)
  # The kernel copy gets no gradient: all of it goes, in float32, to the master kernel.
  return d_x.astype(x.dtype), None, d_kernel.astype(master.dtype)


_dense_matmul_low.defvjp(_dense_fwd, _dense_bwd)


def dense_matmul(x: Array, kernel: Array, master: Array) -> Array:
  """x [..., in] (compute dtype) @ kernel [in, out] -> [..., out] float32.

  `kernel` is `master` (the parameter) in the compute dtype; the gradient of the product goes to
  `master` (float32 accumulation, cast to master's dtype), none to `kernel`. In float32 this is a
  plain dot_general.
  """
  if not _is_low_precision(x.dtype):
    return lax.dot_general(
      x, kernel, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )
  return _dense_matmul_low(x, kernel, master)


# --------------------------------------------------------------------------- einsum


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _einsum_low(spec: str, a: Array, b: Array) -> Array:
  return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _einsum_fwd(spec, a, b):
  return _einsum_low(spec, a, b), (a, b)


def _einsum_bwd(spec, residuals, grad):
  a, b = residuals
  inputs, out = spec.split("->")
  spec_a, spec_b = inputs.split(",")
  grad = grad.astype(a.dtype)
  d_a = _einsum_in_output_order((out, grad), (spec_b, b), spec_a)
  d_b = _einsum_in_output_order((out, grad), (spec_a, a), spec_b)
  return d_a.astype(a.dtype), d_b.astype(b.dtype)


def _einsum_in_output_order(x: tuple[str, Array], y: tuple[str, Array], out: str) -> Array:
  """einsum of two (spec, operand) pairs into `out`, float32 accumulation, with the operand that
  holds the first non-shared index of `out` on the left: the dot's natural [batch, lhs free, rhs
  free] order then matches `out`: albert_flax.upstream.XLA_CPU_BF16_DOT_ORDER (XLA's CPU backend
  rejects some bf16 x bf16 -> f32 dots of the other order)."""
  (spec_x, op_x), (spec_y, op_y) = x, y
  first_free = next(index for index in out if (index in spec_x) != (index in spec_y))
  if first_free not in spec_x:
    (spec_x, op_x), (spec_y, op_y) = (spec_y, op_y), (spec_x, op_x)
  return jnp.einsum(f"{spec_x},{spec_y}->{out}", op_x, op_y, preferred_element_type=jnp.float32)


_einsum_low.defvjp(_einsum_fwd, _einsum_bwd)


def einsum_f32(spec: str, a: Array, b: Array) -> Array:
  """`jnp.einsum(spec, a, b)` with float32 accumulation and a float32 result.

  For compute-dtype operands the backward GEMMs also take compute-dtype operands (the float32
  cotangent is cast first). `spec` is explicit ("ab,bc->ac", no "..."), and every index appears
  in two of the three terms (no index summed inside one operand), as in a GEMM.
  """
  if not _is_low_precision(a.dtype):
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
  return _einsum_low(spec, a, b)


# --------------------------------------------------------------------------- softmax


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _softmax_low(scores: Array, dtype: Any) -> Array:
  return jax.nn.softmax(scores, axis=-1).astype(dtype)


def _softmax_fwd(scores, dtype):
  probs = _softmax_low(scores, dtype)
  return probs, probs


def _softmax_bwd(dtype, probs, grad):
  probs = probs.astype(jnp.float32)
  grad = grad.astype(jnp.float32)
  return (probs * (grad - jnp.sum(probs * grad, axis=-1, keepdims=True)),)


_softmax_low.defvjp(_softmax_fwd, _softmax_bwd)


def softmax_to(scores: Array, dtype: Any) -> Array:
  """softmax over the last axis of float32 `scores`, returned in `dtype`.

  In a low-precision `dtype` only the `dtype` probabilities are saved for the backward pass
  (its arithmetic stays float32).
  """
  if not _is_low_precision(dtype):
    return jax.nn.softmax(scores, axis=-1).astype(dtype)
  return _softmax_low(scores, jnp.dtype(dtype))


# --------------------------------------------------------------------------- kernel copies


def with_compute_copies(variables: dict[str, Any], dtype: Any) -> dict[str, Any]:
  """`nn.map_variables` trans_in_fn: add COMPUTE_COPIES, every "kernel" of "params" in `dtype`.

  Applied around a scanned group, the casts run once per call, before the loop, instead of once
  per layer inside it.
  """
  params = nn.meta.unbox(variables["params"])
  flat = traverse_util.flatten_dict(params)
  copies = {path: value.astype(dtype) for path, value in flat.items() if path[-1] == "kernel"}
  return {**variables, COMPUTE_COPIES: traverse_util.unflatten_dict(copies)}
