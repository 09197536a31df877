"""One converter per format: the serving function (albert_flax.export.serving) into an artifact.

    stablehlo    jax.export, serialized (model.stablehlo): any JAX >= the exporting one runs it
    onnx         jax2onnx (model.onnx): the scanned shared layer becomes one ONNX Loop whose body
                 reads the layer's weights from the outer graph, so they are stored once
    saved_model  jax2tf (saved_model/): a TF serving signature on token ids, the parameters as
                 TF variables
    litert       the LiteRT converter on that SavedModel (model.tflite)

jax2onnx: the maintained JAX -> ONNX converter (primitive by primitive, opset 23, symbolic
dimensions, lax.scan -> Loop). tf2onnx cannot take jax2tf's output (an XlaCallModule op holding
StableHLO), and orbax-export adds nothing over jax2tf for one signature. jax2onnx's own Flax
plugins replace linen layers while it traces, which breaks our layers (boxed parameters, a
scan over them): it is given the model as a plain traced function instead
(`serving.PortableTrace`). jax2onnx pins orbax-checkpoint < 0.11.37 (through orbax-export)
though its converter imports neither: setup.cfg installs it without its dependencies, then
what it does import.

Heavy packages are imported here, inside the converters, only when one runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
from flax import linen as nn

from albert_flax import quantize_int8
from albert_flax.export import serving
from albert_flax.install_hints import MissingExtraError, require  # noqa: F401 (converters' API)

ONNX_FILE = "model.onnx"
STABLEHLO_FILE = "model.stablehlo"
SAVED_MODEL_DIR = "saved_model"
LITERT_FILE = "model.tflite"
ARTIFACT = {
  "stablehlo": STABLEHLO_FILE,
  "onnx": ONNX_FILE,
  "saved_model": SAVED_MODEL_DIR,
  "litert": LITERT_FILE,
}
_ONNX_SINGLE_FILE_LIMIT = 1_900_000_000
# --------------------------------------------------------------------------- StableHLO


def to_stablehlo(model: nn.Module, params: Any, out_dir: str, max_seq_length: int | None) -> str:
  """Serialize `jax.export` of the serving function with the parameters as constants.

  Lowered for CPU, CUDA and TPU (jax.export lowers for platforms this machine lacks), so the one
  file runs on any of them.
  """
  serve = serving.serving_fn(model)
  specs = serving.input_specs(model, max_seq_length)
  fn = jax.jit(lambda ids, mask, types: serve(params, ids, mask, types))
  exported = jax.export.export(fn, platforms=("cpu", "cuda", "tpu"))(*specs)
  path = os.path.join(out_dir, STABLEHLO_FILE)
  with open(path, "wb") as f:
    f.write(exported.serialize())
  return path


# --------------------------------------------------------------------------- ONNX


def to_onnx(
  model: nn.Module, params: Any, out_dir: str, max_seq_length: int | None, opset: int = 23
) -> str:
  """model.onnx with dynamic axes named after `serving.input_axes` and the parameters as
  initializers (each once: the shared layer's inside the Loop body are outer-graph values)."""
  jax2onnx = require("jax2onnx", "format='onnx'")
  onnx = require("onnx", "format='onnx'")
  specs = serving.input_specs(model, max_seq_length)
  serve = serving.serving_fn(model)
  names = serving.OUTPUT_NAMES[serving.model_class_name(model)]

  def outputs(input_ids, attention_mask, token_type_ids):
    out = serve(params, input_ids, attention_mask, token_type_ids)
    return tuple(out[name] for name in names)

  fn = serving.portable(outputs, *specs)

  path = os.path.join(out_dir, ONNX_FILE)
  # onnx_ir warns once per Loop-body value whose type it leaves to the runtime: noise.
  with _quiet("onnx_ir", "jax2onnx"):
    proto = jax2onnx.to_onnx(
      fn,
      specs,
      input_names=list(serving.INPUT_NAMES),
      output_names=list(names),
      model_name=serving.model_class_name(model),
      opset=opset,
    )
  # One self-contained file while protobuf's 2 GiB limit allows (every released size but
  # xxlarge in float32), else the weights in model.onnx.data beside it.
  onnx.save(proto, path, save_as_external_data=proto.ByteSize() > _ONNX_SINGLE_FILE_LIMIT)
  return path


# --------------------------------------------------------------------------- TF


def to_saved_model(model: nn.Module, params: Any, out_dir: str, max_seq_length: int | None) -> str:
  """saved_model/ with signature "serving_default": int32 input_ids, attention_mask,
  token_type_ids ([batch, seq] or [batch, choices, seq], any sizes) -> the named outputs.

  The parameters are TF variables (stored once, in variables/), passed to jax2tf's function.
  """
  tf = require("tensorflow", "format='saved_model'")
  jax2tf = require("jax.experimental.jax2tf", "format='saved_model'")
  specs = serving.input_specs(model, max_seq_length)
  serve = serving.serving_fn(model)
  names = serving.OUTPUT_NAMES[serving.model_class_name(model)]
  leaves, treedef = jax.tree.flatten(params)
  leaves = [np.asarray(x) for x in leaves]

  def outputs(flat_params, input_ids, attention_mask, token_type_ids):
    out = serve(jax.tree.unflatten(treedef, flat_params), input_ids, attention_mask, token_type_ids)
    return tuple(out[name] for name in names)

  shape, constraints = serving.symbolic_shape_text(model, max_seq_length)
  tf_fn = jax2tf.convert(
    serving.portable(outputs),
    polymorphic_shapes=[None, f"({shape})", f"({shape})", f"({shape})"],
    polymorphic_constraints=constraints,
    with_gradient=False,
  )
  module = tf.Module()
  module.params = [tf.Variable(x, trainable=False, name=f"p{i}") for i, x in enumerate(leaves)]
  signature = [
    tf.TensorSpec([None] * len(specs[0].shape), tf.int32, name=n) for n in serving.INPUT_NAMES
  ]

  @tf.function(input_signature=signature, autograph=False)
  def signature_fn(input_ids, attention_mask, token_type_ids):
    results = tf_fn(module.params, input_ids, attention_mask, token_type_ids)
    return dict(zip(names, results, strict=True))

  module.serve = signature_fn
  path = os.path.join(out_dir, SAVED_MODEL_DIR)
  tf.saved_model.save(module, path, signatures={"serving_default": signature_fn})
  return path


def to_litert(
  model: nn.Module,
  params: Any,
  out_dir: str,
  max_seq_length: int | None,
  saved_model: str | None = None,
) -> str:
  """model.tflite converted from the SavedModel (made in a temporary folder unless given).

  A quantized model (int8 weights) is converted with LiteRT's dynamic-range quantization, from
  its weights as int8 x scale: qwix's per-output-channel absmax int8, which LiteRT's per-channel
  symmetric int8 reproduces, and LiteRT's kernels then also quantize the activations on the fly
  (int8 GEMMs). (qwix's int8 tables in the SavedModel itself would be folded back to float32 by
  the converter, and its dequantizing lookup is a dynamic gather LiteRT cannot take.)
  """
  tf = require("tensorflow", "format='litert'")
  import tempfile

  quantized = is_quantized(params)
  if quantized:  # LiteRT quantizes itself (below); it is given the numbers to reproduce
    model, params = quantize_int8.dequantize(model, params)

  with tempfile.TemporaryDirectory() as tmp:
    if saved_model is None:
      saved_model = to_saved_model(model, params, tmp, max_seq_length)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantized:
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    flatbuffer = converter.convert()
  path = os.path.join(out_dir, LITERT_FILE)
  with open(path, "wb") as f:
    f.write(flatbuffer)
  return path


def is_quantized(params: Any) -> bool:
  """Whether any parameter leaf is int8 (a tree from `af.quantize`)."""
  return any(np.dtype(x.dtype) == np.int8 for x in jax.tree.leaves(params))


class _quiet:
  """Raise the named loggers to ERROR for a block."""

  def __init__(self, *names: str):
    self.loggers = [logging.getLogger(n) for n in names]

  def __enter__(self):
    self.levels = [lg.level for lg in self.loggers]
    for lg in self.loggers:
      lg.setLevel(logging.ERROR)

  def __exit__(self, *exc):
    for lg, level in zip(self.loggers, self.levels, strict=True):
      lg.setLevel(level)
