"""af.quantize: int8 weights (qwix) that run like the float model, in JAX and in the ONNX and
LiteRT exports; a quarter of the float size."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from onnx_sizes import tensor_bytes

import albert_flax as af
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


@pytest.fixture(scope="module")
def models():
  model = af.AlbertForSequenceClassification(af.AlbertConfig(**CONFIG))
  params = serving.plain_params(
    jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 8), jnp.int32))["params"]
  )
  qmodel, qparams = af.quantize(model, params)
  return model, params, qmodel, qparams


def fixed_batch(batch_size=4, seq=12):
  rng = np.random.default_rng(0)
  ids = rng.integers(5, CONFIG["vocab_size"], (batch_size, seq)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[-1, seq - 4 :] = 0
  return ids, mask, np.zeros_like(ids)


def test_int8_model_agrees_with_float32(models):
  model, params, qmodel, qparams = models
  inputs = fixed_batch()
  want = np.asarray(model.apply({"params": params}, *inputs).logits)
  got = np.asarray(qmodel.apply({"params": qparams}, *inputs).logits)
  assert not np.array_equal(got, want)  # it is quantized
  scale = np.abs(want).max()
  assert np.abs(got - want).max() < 0.05 * scale, (got, want)
  np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


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


def test_int8_litert_export(models, tmp_path):
  """LiteRT's dynamic-range int8: its weights are qwix's, its activations quantized per call."""
  from ai_edge_litert.interpreter import Interpreter

  model, params, qmodel, qparams = models
  path = af.export(qmodel, qparams, tmp_path / "q", format="litert")
  runner = Interpreter(model_path=path).get_signature_runner()
  for shape in ((1, 5), (4, 12)):
    inputs = fixed_batch(*shape)
    want = np.asarray(qmodel.apply({"params": qparams}, *inputs).logits)
    got = runner(**dict(zip(serving.INPUT_NAMES, inputs, strict=True)))["logits"]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max(), (got, want)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
