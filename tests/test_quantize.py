"""af.quantize: int8 weights (qwix) that run like the float model, in JAX and in the ONNX and
LiteRT exports; a quarter of the float size; for every cross-layer sharing strategy, with one
scale per layer and output channel for the per-layer (stacked) kernels."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from onnx_sizes import tensor_bytes

import albert_flax as af
from albert_flax import layer_sharing
from albert_flax.config import CROSS_LAYER_SHARING
from albert_flax.export import serving
from albert_flax.quantize_int8 import size_in_bytes

CONFIG = dict(
  vocab_size=300,
  embedding_size=32,
  hidden_size=64,
  num_hidden_layers=3,
  num_attention_heads=2,
  intermediate_size=128,
  max_position_embeddings=32,
  num_labels=3,
)


@functools.cache
def quantized(sharing: str = "all"):
  """(model, params, qmodel, qparams), once per sharing strategy."""
  model = af.AlbertForSequenceClassification(af.AlbertConfig(**CONFIG, cross_layer_sharing=sharing))
  params = serving.plain_params(
    jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 8), jnp.int32))["params"]
  )
  qmodel, qparams = af.quantize(model, params)
  return model, params, qmodel, qparams


@pytest.fixture(scope="module")
def models():
  return quantized("all")


def fixed_batch(batch_size=4, seq=12):
  rng = np.random.default_rng(0)
  ids = rng.integers(5, CONFIG["vocab_size"], (batch_size, seq)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[-1, seq - 4 :] = 0
  return ids, mask, np.zeros_like(ids)


def assert_close_to_float32(got, want):
  assert not np.array_equal(got, want)  # it is quantized
  assert np.abs(got - want).max() < 0.05 * np.abs(want).max(), (got, want)
  np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_int8_model_agrees_with_float32(models):
  model, params, qmodel, qparams = models
  inputs = fixed_batch()
  want = np.asarray(model.apply({"params": params}, *inputs).logits)
  got = np.asarray(qmodel.apply({"params": qparams}, *inputs).logits)
  assert_close_to_float32(got, want)


@pytest.mark.parametrize("sharing", CROSS_LAYER_SHARING)
def test_every_sharing_strategy_quantizes_per_layer_and_exports(sharing, tmp_path):
  """The per-layer kernels [L, in, out] get scales [L, 1, out] (the scan slices both alike),
  each layer's its own absmax; the int8 model runs like the float one, and so do its StableHLO
  and ONNX exports."""
  import onnxruntime

  model, params, qmodel, qparams = quantized(sharing)
  layers = CONFIG["num_hidden_layers"]
  kernels = {p: x for p, x in traverse_util.flatten_dict(params).items() if p[-1] == "kernel"}
  stacked = {p for p in kernels if layer_sharing.is_per_layer(model.config, p)}
  assert (sharing == "all") == (not stacked)
  quantized_kernels = traverse_util.flatten_dict(qparams)
  for path in stacked:
    kernel, scale = np.asarray(kernels[path]), np.asarray(quantized_kernels[path].array.scale)
    assert kernel.shape[0] == layers
    assert scale.shape == (layers, 1, kernel.shape[-1]), (path, scale.shape)
    # Each layer quantized on its own: its scales are its kernel's absmax per output channel
    # over one constant (the int8 bound qwix maps absmax to).
    ratio = scale[:, 0] / np.abs(kernel).max(1)
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-6)

  inputs = fixed_batch()
  want = np.asarray(model.apply({"params": params}, *inputs).logits)
  got = np.asarray(qmodel.apply({"params": qparams}, *inputs).logits)
  assert_close_to_float32(got, want)

  stablehlo = af.export(qmodel, qparams, tmp_path / "s", format="stablehlo")
  exported = jax.export.deserialize(open(stablehlo, "rb").read())
  np.testing.assert_allclose(exported.call(*inputs)["logits"], got, atol=1e-5, rtol=0)
  options = onnxruntime.SessionOptions()
  options.log_severity_level = 3
  path = af.export(qmodel, qparams, tmp_path / "o", format="onnx")
  session = onnxruntime.InferenceSession(path, options)
  (onnx_got,) = session.run(None, dict(zip(serving.INPUT_NAMES, inputs, strict=True)))
  np.testing.assert_allclose(onnx_got, got, atol=1e-4, rtol=0)


def test_int8_weights_and_size(models):
  _, params, _, qparams = models
  int8 = [x for x in jax.tree.leaves(qparams) if x.dtype == jnp.int8]
  # Every kernel and the three embedding tables.
  kernels = [x for x in jax.tree.leaves(params) if x.ndim == 2]
  assert len(int8) == len(kernels)
  assert size_in_bytes(qparams) <= 0.3 * size_in_bytes(params)


def test_int8_onnx_export(models, tmp_path):
  import onnx
  import onnxruntime

  model, params, qmodel, qparams = models
  path = af.export(qmodel, qparams, tmp_path / "q", format="onnx")
  float_path = af.export(model, params, tmp_path / "f", format="onnx")
  # The weights stored: int8 kernels and tables, float32 scales, biases and LayerNorms.
  stored, float_stored = (tensor_bytes(onnx.load(p).graph) for p in (path, float_path))
  assert stored <= 0.3 * float_stored, (stored, float_stored)
  assert os.path.getsize(path) < os.path.getsize(float_path)
  options = onnxruntime.SessionOptions()
  options.log_severity_level = 3
  session = onnxruntime.InferenceSession(path, options)
  for shape in ((1, 5), (4, 12)):
    inputs = fixed_batch(*shape)
    want = np.asarray(qmodel.apply({"params": qparams}, *inputs).logits)
    (got,) = session.run(None, dict(zip(serving.INPUT_NAMES, inputs, strict=True)))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("sharing", ["all", "none"])  # "none": every encoder kernel stacked
def test_int8_litert_export(sharing, tmp_path):
  """LiteRT's dynamic-range int8: its weights are qwix's, its activations quantized per call."""
  from ai_edge_litert.interpreter import Interpreter

  model, params, qmodel, qparams = quantized(sharing)
  path = af.export(qmodel, qparams, tmp_path / "q", format="litert")
  runner = Interpreter(model_path=path).get_signature_runner()
  for shape in ((1, 5), (4, 12)):
    inputs = fixed_batch(*shape)
    want = np.asarray(qmodel.apply({"params": qparams}, *inputs).logits)
    got = runner(**dict(zip(serving.INPUT_NAMES, inputs, strict=True)))["logits"]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max(), (got, want)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
