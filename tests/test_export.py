"""af.export: every format round-trips from one artifact at two batch sizes and two lengths, for
the classification and question-answering heads; the ONNX file stores the shared layer once; the
command writes the artifact with its tokenizer and README; a missing extra is a one-line error.

Conversions are slow (TF, LiteRT): each artifact is made once per module (fixtures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from finetune_testdata import make_tokenizer
from onnx_sizes import tensor_bytes

import albert_flax as af
from albert_flax import export as af_export
from albert_flax.export import serving

# Six steps of the shared layer: a converter copying it per step would make the file ~5x larger.
CONFIG = dict(
  embedding_size=16,
  hidden_size=48,
  num_hidden_layers=6,
  num_attention_heads=2,
  intermediate_size=96,
  max_position_embeddings=40,
  initializer_range=0.2,
)
SHAPES = ((1, 7), (3, 16))  # (batch, seq): two batch sizes and two lengths, one artifact
HEADS = ("AlbertForSequenceClassification", "AlbertForQuestionAnswering")
MAX_SEQ = 32


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  root = tmp_path_factory.mktemp("export")
  tokenizer = af.AlbertTokenizer(make_tokenizer(str(root)))
  config = af.AlbertConfig(vocab_size=tokenizer.vocab_size, num_labels=3, **CONFIG)
  models = {}
  for name in HEADS:
    model = af.MODEL_CLASSES[name](config)
    params = jax.jit(model.init)(jax.random.key(1), jnp.ones((1, 8), jnp.int32))["params"]
    models[name] = (model, serving.plain_params(params))
  return root, tokenizer, models


def batch(batch_size: int, seq: int, vocab: int):
  rng = np.random.default_rng(batch_size * 100 + seq)
  ids = rng.integers(5, vocab, (batch_size, seq)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[0, seq - 3 :] = 0  # padding on the right in the first row
  types = np.zeros_like(ids)
  types[:, seq // 2 :] = 1
  return ids, mask, types


def reference(model, params, inputs) -> dict[str, np.ndarray]:
  out = model.apply({"params": params}, *inputs)
  return {n: np.asarray(getattr(out, n)) for n in serving.OUTPUT_NAMES[type(model).__name__]}


def artifacts(workspace, fmt):
  root, tokenizer, models = workspace
  paths = {}
  for name, (model, params) in models.items():
    out = root / f"{fmt}_{name}"
    paths[name] = af.export(
      model, params, out, format=fmt, max_seq_length=MAX_SEQ, tokenizer=tokenizer
    )
  return paths


def check_round_trip(workspace, run, tolerance=1e-4):
  """`run(head, inputs) -> {name: array}` equals the JAX model at every shape."""
  _, tokenizer, models = workspace
  for name, (model, params) in models.items():
    for shape in SHAPES:
      inputs = batch(*shape, tokenizer.vocab_size)
      want = reference(model, params, inputs)
      got = run(name, inputs)
      assert set(got) == set(want), name
      for key in want:
        assert got[key].shape == want[key].shape, (name, key, shape)
        np.testing.assert_allclose(got[key], want[key], atol=tolerance, rtol=0, err_msg=key)


# --------------------------------------------------------------------------- StableHLO


def test_stablehlo_in_a_process_without_albert_flax(workspace, tmp_path):
  paths = artifacts(workspace, "stablehlo")
  _, tokenizer, _ = workspace
  inputs = {f"{n}_{s[0]}x{s[1]}": batch(*s, tokenizer.vocab_size) for n in HEADS for s in SHAPES}
  np.savez(
    tmp_path / "in.npz", **{f"{k}_{i}": v for k, t in inputs.items() for i, v in enumerate(t)}
  )
  script = textwrap.dedent(
    f"""
    import sys, numpy as np, jax
    data = np.load({str(tmp_path / "in.npz")!r})
    paths = {json.dumps({n: os.fspath(p) for n, p in paths.items()})}
    out = {{}}
    for name, path in paths.items():
      exported = jax.export.deserialize(open(path, "rb").read())
      for b, s in {SHAPES!r}:
        key = f"{{name}}_{{b}}x{{s}}"
        result = exported.call(*(data[f"{{key}}_{{i}}"] for i in range(3)))
        out.update({{f"{{key}}:{{k}}": np.asarray(v) for k, v in result.items()}})
    assert "albert_flax" not in sys.modules
    np.savez({str(tmp_path / "out.npz")!r}, **out)
    """
  )
  subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=300)
  got = np.load(tmp_path / "out.npz")

  def run(name, inputs):
    key = f"{name}_{inputs[0].shape[0]}x{inputs[0].shape[1]}:"
    return {k[len(key) :]: got[k] for k in got.files if k.startswith(key)}

  check_round_trip(workspace, run)


# --------------------------------------------------------------------------- ONNX


@pytest.fixture(scope="module")
def onnx_paths(workspace):
  return artifacts(workspace, "onnx")


def test_onnx_round_trip_and_dynamic_axes(workspace, onnx_paths):
  import onnx
  import onnxruntime

  sessions = {}
  for name, path in onnx_paths.items():
    graph = onnx.load(path).graph
    for value in graph.input:
      dims = [d.dim_param for d in value.type.tensor_type.shape.dim]
      assert dims == ["batch", "seq"], (value.name, dims)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    sessions[name] = onnxruntime.InferenceSession(path, options)

  def run(name, inputs):
    session = sessions[name]
    feed = dict(zip(serving.INPUT_NAMES, inputs, strict=True))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))

  check_round_trip(workspace, run)


def test_onnx_stores_the_shared_layer_once(workspace, onnx_paths):
  """The weights in the file are the parameters once (a copy per layer step would be ~5x).
  At this size the graph's own structure (~100 KB, whatever the width) is as large as the
  weights, so the file size is checked against them plus that; at ALBERT-base the file is
  within a few percent of 4 bytes x parameters (benchmarks/RESULTS.md)."""
  import onnx

  _, _, models = workspace
  for name, path in onnx_paths.items():
    _, params = models[name]
    float_bytes = 4 * sum(x.size for x in jax.tree.leaves(params))
    stored = tensor_bytes(onnx.load(path).graph)
    assert float_bytes <= stored < 1.10 * float_bytes, (name, stored, float_bytes)
    assert os.path.getsize(path) < stored + 150_000, (name, os.path.getsize(path))


# --------------------------------------------------------------------------- TF / LiteRT


def test_saved_model_round_trip(workspace):
  import tensorflow as tf

  paths = artifacts(workspace, "saved_model")
  signatures = {n: tf.saved_model.load(p).signatures["serving_default"] for n, p in paths.items()}

  def run(name, inputs):
    feed = {k: tf.constant(v) for k, v in zip(serving.INPUT_NAMES, inputs, strict=True)}
    return {k: v.numpy() for k, v in signatures[name](**feed).items()}

  check_round_trip(workspace, run)


def test_litert_round_trip(workspace):
  from ai_edge_litert.interpreter import Interpreter

  paths = artifacts(workspace, "litert")
  runners = {n: Interpreter(model_path=p).get_signature_runner() for n, p in paths.items()}

  def run(name, inputs):
    return runners[name](**dict(zip(serving.INPUT_NAMES, inputs, strict=True)))

  check_round_trip(workspace, run)


# --------------------------------------------------------------------------- the command


def test_command_writes_artifact_tokenizer_and_readme(workspace, tmp_path):
  from albert_flax.export.__main__ import main

  root, tokenizer, models = workspace
  model, params = models["AlbertForQuestionAnswering"]
  saved = tmp_path / "saved"
  af.save_pretrained(saved, model, params, format="orbax", tokenizer=tokenizer.vocab_file)
  out = tmp_path / "out"
  args = [f"--model={saved}", "--format=stablehlo", f"--out={out}", "--max_seq_length=16"]
  assert main(args) == 0
  files = set(os.listdir(out))
  assert {"model.stablehlo", "spiece.model", "tokenizer_config.json", "README.md"} <= files
  manifest = json.loads((out / "export.json").read_text())
  assert manifest["model_class"] == "AlbertForQuestionAnswering"
  assert manifest["outputs"] == ["start_logits", "end_logits"]
  assert manifest["max_seq_length"] == 16
  assert "jax.export.deserialize" in (out / "README.md").read_text()
  exported = jax.export.deserialize((out / "model.stablehlo").read_bytes())
  inputs = batch(2, 16, tokenizer.vocab_size)
  got = exported.call(*inputs)
  want = reference(model, params, inputs)
  np.testing.assert_allclose(np.asarray(got["start_logits"]), want["start_logits"], atol=1e-5)
  with pytest.raises(Exception, match="(?i)shape"):  # the artifact's longest input is 16
    exported.call(*batch(1, 17, tokenizer.vocab_size))


def test_command_bad_input_is_one_line(tmp_path, capsys):
  from albert_flax.export.__main__ import main

  assert main([f"--model={tmp_path / 'nowhere'}", "--format=onnx", f"--out={tmp_path}"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and "nowhere" in err


def test_missing_extra_is_one_line_naming_it(workspace, tmp_path, monkeypatch):
  _, _, models = workspace
  model, params = models["AlbertForSequenceClassification"]
  monkeypatch.setitem(sys.modules, "jax2onnx", None)  # import jax2onnx now raises ImportError
  with pytest.raises(af_export.MissingExtraError) as raised:
    af.export(model, params, tmp_path, format="onnx")
  message = str(raised.value)
  assert "\n" not in message and "jax2onnx" in message and "pip install -e '.[export]'" in message


def test_unknown_format_and_too_long(workspace, tmp_path):
  _, _, models = workspace
  model, params = models["AlbertForSequenceClassification"]
  with pytest.raises(ValueError, match="unknown export format"):
    af.export(model, params, tmp_path, format="tflite")
  with pytest.raises(ValueError, match="max_position_embeddings"):
    af.export(model, params, tmp_path, format="stablehlo", max_seq_length=41)
