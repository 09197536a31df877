"""from_pretrained / save_pretrained: every layout both ways, and the loading rules.

Formats: transformers (safetensors, .bin, sharded), the Hub (a local fake), the original TF1
checkpoint (built here with the original variable names, cross-checked with transformers' own
TF reader), our orbax directory and a pretraining workdir. Rules: unused parts dropped and new
heads initialized with one log line each, unknown names / wrong shapes / damaged files raising.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import flax.struct
import jax
import numpy as np
import pytest
import tf_checkpoints
from conftest import TINY, assert_outputs_match, forward, torch_outputs, torch_reference
from flax import traverse_util

import albert_flax as af

LOGGER = "albert_flax.checkpoints"


def _flat(params) -> dict[str, np.ndarray]:
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


def _assert_same_params(a, b):
  fa, fb = _flat(a), _flat(b)
  assert fa.keys() == fb.keys()
  for k in fa:
    np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


@pytest.fixture(scope="module")
def loaded(pretraining_checkpoint):
  """(model, params) of the transformers pretraining checkpoint."""
  return af.from_pretrained(pretraining_checkpoint[0])


def _records(caplog, level):
  return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


# ------------------------------------------------------------------------------ transformers


@pytest.mark.parametrize("variant", ["pytorch_model.bin", "sharded"])
def test_bin_and_sharded_checkpoints_read_like_safetensors(
  variant, pretraining_checkpoint, loaded, tmp_path
):
  _, reference, *_ = pretraining_checkpoint
  if variant == "sharded":
    reference.save_pretrained(tmp_path, max_shard_size="20KB")
    assert os.path.isfile(tmp_path / "model.safetensors.index.json")
  else:
    reference.save_pretrained(tmp_path, safe_serialization=False)
    assert os.path.isfile(tmp_path / "pytorch_model.bin")
  _, params = af.from_pretrained(tmp_path)
  _assert_same_params(params, loaded[1])


def test_hub_id_goes_through_snapshot_download(monkeypatch, pretraining_checkpoint, loaded):
  import huggingface_hub

  calls = []

  def fake_snapshot_download(repo_id, **kwargs):
    calls.append(repo_id)
    return str(pretraining_checkpoint[0])

  monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
  _, params = af.from_pretrained("someone/albert-tiny")
  assert calls == ["someone/albert-tiny"]
  _assert_same_params(params, loaded[1])


def test_offline_hub_id_raises_a_clear_error(monkeypatch, tmp_path):
  from huggingface_hub import constants

  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
  with pytest.raises(OSError, match="nobody/no-such-albert.*HF_HUB_OFFLINE"):
    af.from_pretrained("nobody/no-such-albert")
  with pytest.raises(FileNotFoundError, match="No such file"):
    af.from_pretrained(str(tmp_path / "missing" / "dir"))


# ---------------------------------------------------------------------------- original TF


def _write_original_checkpoint(directory, torch_model) -> None:
  """An original google-research/albert checkpoint (with Adam slots and global_step as
  run_pretraining.py leaves them) and its albert_config.json."""
  variables = tf_checkpoints.original_variables(torch_model)
  tf_checkpoints.save_tf1(directory, "model.ckpt-125000", variables, global_step=125000)
  with open(os.path.join(directory, "albert_config.json"), "w") as f:
    json.dump(tf_checkpoints.original_config(torch_model.config, "gelu"), f)


def _transformers_reads_tf(directory, inputs, capsys):
  """transformers' own reader of original checkpoints, into a fresh model: its outputs."""
  import tensorflow as tf
  import transformers
  from transformers.models.albert.modeling_albert import load_tf_weights_in_albert

  model = transformers.AlbertForPreTraining(
    transformers.AlbertConfig(**TINY, attn_implementation="eager")
  )
  load_tf_weights_in_albert(model, model.config, tf.train.latest_checkpoint(str(directory)))
  capsys.readouterr()  # it prints every variable
  return torch_outputs(model.eval(), *inputs)


def test_original_tf_checkpoint_both_ways(pretraining_checkpoint, loaded, tmp_path, capsys):
  _, reference, inputs, expected = pretraining_checkpoint
  original = tmp_path / "original"
  original.mkdir()
  _write_original_checkpoint(original, reference)
  # The names above are the ones transformers' reader knows: it rebuilds the same model (up to
  # float rounding: it installs transposed, non-contiguous tensors).
  assert_outputs_match(
    torch_outputs(reference, *inputs),
    _transformers_reads_tf(original, inputs, capsys),
    rtol=1e-6,
    atol=1e-6,
  )

  model, params = af.from_pretrained(original)  # the directory: newest model.ckpt-* is read
  assert model.config.hidden_act == "gelu_new"  # the original's gelu is the tanh form
  _assert_same_params(params, loaded[1])
  assert assert_outputs_match(forward(model, params, *inputs), expected) == 3
  _, by_prefix = af.from_pretrained(original / "model.ckpt-125000")
  _assert_same_params(by_prefix, params)

  exported = tmp_path / "exported"
  af.save_pretrained(exported, model, params, format="tf")
  assert json.load(open(exported / "albert_config.json"))["hidden_act"] == "gelu"
  _, back = af.from_pretrained(exported)
  _assert_same_params(back, params)
  assert_outputs_match(
    _transformers_reads_tf(exported, inputs, capsys), expected, rtol=1e-6, atol=1e-6
  )


def test_tf_classifier_round_trip_keeps_num_labels(classifier_checkpoint, tmp_path):
  model, params = af.from_pretrained(classifier_checkpoint, af.AlbertForSequenceClassification)
  af.save_pretrained(tmp_path, model, params, format="tf")
  # albert_config.json has no num_labels: the width of output_weights [3, H] gives it.
  model2, params2 = af.from_pretrained(tmp_path, af.AlbertForSequenceClassification)
  assert model2.config.num_labels == 3
  _assert_same_params(params2, params)
  # The original format's "gelu" is the tanh form: an exact-gelu model cannot be written as it.
  exact = af.AlbertForSequenceClassification(model.config.replace(hidden_act="gelu"))
  with pytest.raises(ValueError, match="hidden_act 'gelu' has no name in the original"):
    af.save_pretrained(tmp_path / "exact", exact, params, format="tf")


def test_damaged_tf_checkpoint_names_the_file(pretraining_checkpoint, loaded, tmp_path):
  af.save_pretrained(tmp_path, *loaded, format="tf")
  with open(tmp_path / "model.ckpt-0.index", "r+b") as f:
    f.truncate(20)
  with pytest.raises(ValueError, match=f"{tmp_path}/model.ckpt-0.*corrupt"):
    af.from_pretrained(tmp_path)


# -------------------------------------------------------------------------------- orbax


def test_orbax_round_trip_is_exact_and_checks_shapes(loaded, tmp_path):
  model, params = loaded
  af.save_pretrained(tmp_path, model, params, format="orbax", tokenizer=_fake_spiece(tmp_path))
  assert os.path.isfile(tmp_path / "spiece.model")
  model2, params2 = af.from_pretrained(tmp_path, remat="full")
  assert model2.config == model.config.replace(remat="full")
  _assert_same_params(params2, params)
  with pytest.raises(ValueError) as error:
    af.from_pretrained(tmp_path, hidden_size=64)
  message = str(error.value)
  assert (
    "albert/encoder/embedding_hidden_mapping_in/kernel: expected shape [16, 64], found [16, 32]"
  ) in message
  assert "albert/pooler/kernel: expected shape [64, 64], found [32, 32]" in message


def test_pretraining_workdir_unfinished_needs_a_step(loaded, tmp_path):
  from albert_flax.train.checkpoints import TrainCheckpointManager

  @flax.struct.dataclass
  class State:
    step: jax.Array
    params: dict
    opt_state: dict

  model, params = loaded
  model.config.to_json_file(tmp_path / "config.json", "AlbertForPreTraining")
  manager = TrainCheckpointManager(str(tmp_path / "checkpoints"), async_save=False)
  for step in (10, 20):
    scaled = jax.tree.map(lambda x, s=step: x * s, params)
    manager.save(step, State(np.int32(step), scaled, {"mu": scaled}))
  manager.close()
  # No final model: an unfinished run, refused unless a step is asked for.
  with pytest.raises(ValueError, match=r"unfinished pretraining run.*steps \[10, 20\].*step=20"):
    af.from_pretrained(tmp_path)
  _, restored = af.from_pretrained(tmp_path, step="latest")
  _assert_same_params(restored, jax.tree.map(lambda x: x * 20, params))
  _, restored = af.from_pretrained(tmp_path, step=10)
  _assert_same_params(restored, jax.tree.map(lambda x: x * 10, params))


def _fake_spiece(directory) -> str:
  path = os.path.join(directory, "source.model")
  with open(path, "wb") as f:
    f.write(b"\x0a\x01sentencepiece-bytes")
  return path


# ------------------------------------------------------------------------------ the rules


def test_unused_parts_dropped_and_new_head_initialized(pretraining_checkpoint, loaded, caplog):
  caplog.set_level(logging.INFO, logger=LOGGER)
  model, params = af.from_pretrained(
    pretraining_checkpoint[0], af.AlbertForSequenceClassification, num_labels=3, rng=5
  )
  # Dropping trained weights is a warning too, never a quiet INFO line.
  dropped, fresh = _records(caplog, logging.WARNING)
  assert "drops" in dropped.getMessage()
  for name in (
    "predictions.bias",
    "predictions.dense.weight",
    "predictions.LayerNorm.weight",
    "sop_classifier.classifier.weight",
    "sop_classifier.classifier.bias",
  ):
    assert name in dropped.getMessage()
  assert "classifier/kernel" in fresh.getMessage() and "classifier/bias" in fresh.getMessage()
  assert "albert" not in fresh.getMessage()
  _assert_same_params(params["albert"], loaded[1]["albert"])
  assert params["classifier"]["kernel"].shape == (32, 3)
  # As the model initializes it: N(0, initializer_range = 0.2) kernel, zero bias.
  assert 0.14 < float(np.std(params["classifier"]["kernel"])) < 0.26
  assert not np.any(params["classifier"]["bias"])
  _, same_seed = af.from_pretrained(
    pretraining_checkpoint[0], af.AlbertForSequenceClassification, num_labels=3, rng=5
  )
  _, other_seed = af.from_pretrained(
    pretraining_checkpoint[0], af.AlbertForSequenceClassification, num_labels=3, rng=6
  )
  np.testing.assert_array_equal(same_seed["classifier"]["kernel"], params["classifier"]["kernel"])
  assert not np.array_equal(other_seed["classifier"]["kernel"], params["classifier"]["kernel"])


def test_missing_pooler_is_initialized(tmp_path, caplog):
  caplog.set_level(logging.INFO, logger=LOGGER)
  torch_reference("AlbertForMaskedLM").save_pretrained(tmp_path)  # no pooler
  _, params = af.from_pretrained(tmp_path, af.AlbertForSequenceClassification)
  fresh = _records(caplog, logging.WARNING)[-1]
  assert "albert/pooler/kernel" in fresh.getMessage()
  assert params["albert"]["pooler"]["kernel"].shape == (32, 32)


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory):
  directory = tmp_path_factory.mktemp("hf_classifier")
  torch_reference("AlbertForSequenceClassification", num_labels=3).save_pretrained(directory)
  return directory


def test_head_size_mismatch(classifier_checkpoint, tmp_path, caplog):
  caplog.set_level(logging.INFO, logger=LOGGER)
  # Asked for another size: the head is re-initialized and the warning says why.
  _, params = af.from_pretrained(
    classifier_checkpoint, af.AlbertForSequenceClassification, num_labels=2
  )
  assert params["classifier"]["kernel"].shape == (32, 2)
  (fresh,) = _records(caplog, logging.WARNING)
  assert "classifier.weight is [3, 32], model needs [2, 32]" in fresh.getMessage()
  # Not asked for (the config says 2 labels, the tensor has 3): an error, unless told to ignore.
  shutil.copytree(classifier_checkpoint, tmp_path, dirs_exist_ok=True)
  config = json.load(open(tmp_path / "config.json"))
  config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}
  config["label2id"] = {"LABEL_0": 0, "LABEL_1": 1}
  json.dump(config, open(tmp_path / "config.json", "w"))
  with pytest.raises(
    ValueError,
    match=r"classifier.weight: expected shape \[2, 32\], found "
    r"\[3, 32\] \(a head of another size",
  ):
    af.from_pretrained(tmp_path, af.AlbertForSequenceClassification)
  _, params = af.from_pretrained(
    tmp_path, af.AlbertForSequenceClassification, ignore_mismatched_heads=True
  )
  assert params["classifier"]["kernel"].shape == (32, 2)


def test_no_class_builds_the_saved_architecture_and_finetune_workdirs_load(
  classifier_checkpoint, tmp_path
):
  """A fine-tuned classifier loaded without a class keeps its trained head (issue 14)."""
  model, params = af.from_pretrained(classifier_checkpoint)
  assert type(model).__name__ == "AlbertForSequenceClassification"
  _, explicit = af.from_pretrained(classifier_checkpoint, af.AlbertForSequenceClassification)
  _assert_same_params(params, explicit)
  # A fine-tuning workdir loads through its model/ folder.
  af.save_pretrained(tmp_path / "model", model, params, format="orbax")
  again, from_workdir = af.from_pretrained(tmp_path)
  assert type(again).__name__ == "AlbertForSequenceClassification"
  _assert_same_params(from_workdir, params)


def test_another_tasks_head_is_not_reused(classifier_checkpoint, caplog):
  caplog.set_level(logging.INFO, logger=LOGGER)
  _, params = af.from_pretrained(classifier_checkpoint, af.AlbertForTokenClassification)
  # Same name and shape ([H, 3]) but a sequence classifier: dropped, and a fresh head made.
  dropped, fresh = _records(caplog, logging.WARNING)
  assert "classifier.weight (head of AlbertForSequenceClassification)" in dropped.getMessage()
  assert "classifier/kernel" in fresh.getMessage()
  assert params["classifier"]["kernel"].shape == (32, 3)


def test_unknown_names_and_wrong_shapes_are_each_named(pretraining_checkpoint, tmp_path):
  from safetensors.numpy import load_file, save_file

  source = pretraining_checkpoint[0]
  state = load_file(source / "model.safetensors")
  shutil.copy(source / "config.json", tmp_path / "config.json")
  extra = dict(
    state,
    **{
      "albert.encoder.adapter.weight": np.zeros((4, 4), np.float32),
      "lm_head.weight": np.zeros((2,), np.float32),
    },
  )
  save_file(extra, tmp_path / "model.safetensors", metadata={"format": "pt"})
  with pytest.raises(ValueError) as error:
    af.from_pretrained(tmp_path)
  assert "albert.encoder.adapter.weight [4, 4]: not an ALBERT parameter" in str(error.value)
  assert "lm_head.weight [2]: not an ALBERT parameter" in str(error.value)

  # A checkpoint with hidden 32 read with hidden_size=64: every tensor with a hidden axis named.
  with pytest.raises(ValueError) as error:
    af.from_pretrained(source, hidden_size=64)
  lines = [line.strip() for line in str(error.value).splitlines()[1:]]
  with_hidden_axis = [
    n for n, a in state.items() if 32 in a.shape and not n.startswith("predictions.decoder")
  ]
  assert len(lines) == len(with_hidden_axis) > 60
  assert (
    "albert.encoder.albert_layer_groups.1.albert_layers.1.ffn.weight: expected shape "
    "[37, 64], found [37, 32]"
  ) in lines
  assert all(any(line.startswith(name + ":") for line in lines) for name in with_hidden_axis)


def test_damaged_safetensors_names_the_file(pretraining_checkpoint, tmp_path):
  shutil.copytree(pretraining_checkpoint[0], tmp_path, dirs_exist_ok=True)
  path = tmp_path / "model.safetensors"
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(ValueError, match=f"Could not read checkpoint file {path}.*truncated"):
    af.from_pretrained(tmp_path)


def test_save_checks_the_parameter_tree(loaded, tmp_path):
  model, params = loaded
  broken = {"albert": params["albert"], "predictions": dict(params["predictions"])}
  del broken["predictions"]["bias"]  # and no sop_classifier at all
  with pytest.raises(ValueError, match="predictions/bias: missing"):
    af.save_pretrained(tmp_path, model, broken, format="hf")
  with pytest.raises(ValueError, match="format"):
    af.save_pretrained(tmp_path, model, params, format="pickle")


# ------------------------------------------------------------------ new heads on a backbone

# Wider than TINY so that a fresh head has enough entries for its std to be checked (H=128:
# the smallest new kernel, multiple choice's [128, 1], has 128 of them).
WIDE = dict(TINY, hidden_size=128)


@pytest.fixture(scope="module")
def backbone_checkpoint(tmp_path_factory):
  """An orbax save of a bare AlbertModel (backbone + pooler, no head) with random values."""
  model = af.AlbertModel(af.AlbertConfig(**WIDE))
  shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 1), np.int32))["params"]
  rs = np.random.RandomState(0)  # values from numpy: no model.init to compile
  params = jax.tree.map(
    lambda s: rs.normal(0, 1, s.shape).astype(s.dtype), flax.core.meta.unbox(shapes)
  )
  directory = tmp_path_factory.mktemp("backbone")
  af.save_pretrained(directory, model, params)
  return directory, params


@pytest.mark.parametrize("name", [n for n in af.MODEL_CLASSES if n != "AlbertModel"])
def test_backbone_into_each_head_class_initializes_like_model_init(backbone_checkpoint, name):
  directory, backbone = backbone_checkpoint
  model, params = af.from_pretrained(directory, name, rng=3)
  shape = (1, 1, 1) if name == "AlbertForMultipleChoice" else (1, 1)
  init = flax.core.meta.unbox(
    jax.eval_shape(model.init, jax.random.key(0), np.zeros(shape, np.int32))["params"]
  )
  # The tree model.init makes: same paths, shapes and dtypes.
  assert jax.tree.structure(params) == jax.tree.structure(init)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), params) == jax.tree.map(
    lambda a: (a.shape, a.dtype), init
  )
  loaded, fresh = (
    _flat(params),
    {k: v for k, v in _flat(params).items() if not k.startswith("albert/")},
  )
  saved = _flat(backbone)
  for k in [k for k in loaded if k.startswith("albert/")]:
    np.testing.assert_array_equal(loaded[k], saved[k], err_msg=k)
  assert fresh, "every head class has a head the backbone lacks"
  r = WIDE["initializer_range"]
  for k, v in fresh.items():
    leaf = k.rsplit("/", 1)[-1]
    if leaf == "kernel":  # N(0, initializer_range) as modeling.dense's kernel_init
      assert 0.8 * r < float(np.std(v)) < 1.2 * r, (k, np.std(v))
      assert abs(float(np.mean(v))) < 5 * r / np.sqrt(v.size), (k, np.mean(v))
    elif leaf == "scale":
      np.testing.assert_array_equal(v, np.ones_like(v), err_msg=k)
    else:
      assert leaf == "bias" and not np.any(v), k
  # Deterministic given rng; another rng, other kernels; no two kernels share their values.
  _, again = af.from_pretrained(directory, name, rng=3)
  _assert_same_params(params, again)
  _, other = af.from_pretrained(directory, name, rng=4)
  kernels = [k for k in fresh if k.endswith("kernel")]
  for k in kernels:
    assert not np.array_equal(_flat(other)[k], fresh[k]), k
  firsts = {float(fresh[k].reshape(-1)[0]) for k in kernels}
  assert len(firsts) == len(kernels)


def test_fresh_head_takes_the_parameter_dtype(backbone_checkpoint):
  model, params = af.from_pretrained(
    backbone_checkpoint[0], af.AlbertForPreTraining, param_dtype="bfloat16"
  )
  assert {a.dtype for a in jax.tree.leaves(params)} == {np.dtype("bfloat16")}
  assert (
    0.8 * WIDE["initializer_range"]
    < float(np.std(np.asarray(params["predictions"]["dense"]["kernel"], np.float32)))
    < 1.2 * WIDE["initializer_range"]
  )
