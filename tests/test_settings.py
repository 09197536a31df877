"""The settings both programs share, checked before any work (albert_flax/train/settings.py), and
the model config read from a checkpoint without its weights (AlbertConfig.from_pretrained), which
compile-only mode builds its model from."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from conftest import TINY

import albert_flax as af
from albert_flax.train.program import ConfigError
from finetune import steps as finetune_steps
from finetune.configs import glue
from finetune.train import resolve_config
from pretrain import steps as pretrain_steps
from pretrain.configs import tiny
from pretrain.train import validate_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """{layout: path} of one tiny config in each layout from_pretrained reads."""
  root = tmp_path_factory.mktemp("layouts")
  config = af.AlbertConfig(**TINY)
  (root / "orbax").mkdir()
  config.to_json_file(root / "orbax" / "config.json", "AlbertForPreTraining")
  (root / "finetuned" / "model").mkdir(parents=True)
  config.to_json_file(root / "finetuned" / "model" / "config.json", "AlbertModel")
  tf = root / "tf"
  tf.mkdir()
  original = {k: v for k, v in TINY.items() if k != "hidden_act"} | {"hidden_act": "gelu"}
  (tf / "albert_config.json").write_text(__import__("json").dumps(original))
  for name in ("model.ckpt-7.index", "model.ckpt-7.data-00000-of-00001"):
    (tf / name).write_bytes(b"")  # the files' names are what the layout is told by
  return {"orbax": root / "orbax", "finetuned": root / "finetuned", "tf": tf, "prefix": tf}


@pytest.mark.parametrize("layout", ["orbax", "finetuned", "tf"])
def test_config_from_pretrained_reads_every_layout(saved, layout):
  config = af.AlbertConfig.from_pretrained(saved[layout], remat="full")
  assert config.hidden_size == TINY["hidden_size"] and config.remat == "full"
  prefix = af.AlbertConfig.from_pretrained(str(saved["tf"] / "model.ckpt-7"))
  assert prefix.num_hidden_groups == TINY["num_hidden_groups"]


def test_config_from_pretrained_names_a_missing_checkpoint(tmp_path):
  with pytest.raises(FileNotFoundError, match="No ALBERT config at"):
    af.AlbertConfig.from_pretrained(tmp_path)
  with pytest.raises(FileNotFoundError, match="No ALBERT config at"):
    af.AlbertConfig.from_pretrained(str(tmp_path / "nothing"))


def test_compile_only_builds_both_programs_from_a_checkpoint_path(saved):
  # Only preset names worked: AlbertConfig.from_pretrained did not exist.
  devices = jax.devices()[:1]
  p = tiny.get_config()
  p.init_from = str(saved["orbax"])
  p.batch_size, p.max_seq_length, p.max_predictions_per_seq = 4, 16, 2
  program = pretrain_steps.compile_program(p, devices)
  assert [job.name for job in program.jobs] == ["train_step", "eval_step"]
  f = glue.get_config()
  f.init_from, f.task = str(saved["finetuned"]), "mrpc"
  f.max_seq_length, f.batch_size, f.eval_batch_size = 16, 4, 4
  program = finetune_steps.compile_program(f, devices)
  assert [job.name for job in program.jobs] == ["train_step", "predict_step"]


@pytest.mark.parametrize("key, value, words", [
  ("learning_rate", -1e-3, "learning_rate must be a positive number"),
  ("learning_rate", float("nan"), "learning_rate must be a positive number"),
  ("warmup_steps", -1, "warmup_steps must be an int >= 0"),
  ("batch_size", 0, "batch_size must be a positive int"),
  ("weight_decay", -0.1, "weight_decay must be a number >= 0"),
  ("optimizer", "sgd", "optimizer must be one of"),
  ("dtype", "float8", "dtype must be one of"),
])  # fmt: skip
def test_both_programs_refuse_the_same_bad_settings(saved, key, value, words):
  p = tiny.get_config()
  p[key] = value
  with pytest.raises(ConfigError, match=words):
    validate_config(p)
  f = glue.get_config()
  f.init_from, f.task = str(saved["orbax"]), "mrpc"
  f[key] = value
  with pytest.raises(ConfigError, match=words):
    resolve_config(f)


def test_fine_tuning_checks_the_length_against_the_model_before_loading_it(saved):
  f = glue.get_config()
  f.init_from, f.task, f.max_seq_length = str(saved["orbax"]), "mrpc", 64
  model_config = af.AlbertConfig.from_pretrained(saved["orbax"])  # 24 positions, no weights
  with pytest.raises(ConfigError, match="max_seq_length 64 exceeds the model's"):
    resolve_config(f, model_config=model_config)


def test_a_fine_tuning_workdir_is_a_model_for_every_loader(tmp_path):
  # The run's summary says af.from_pretrained(workdir); the tokenizer and pipelines take it too.
  import finetune_testdata as td

  workdir = tmp_path / "sst2"
  saved = td.tiny_checkpoint(tmp_path)  # config.json, params/, spiece.model
  (workdir).mkdir()
  os.replace(saved, workdir / "model")
  tokenizer = af.load_tokenizer(workdir)
  assert tokenizer.vocab_size == af.AlbertTokenizer(workdir / "model" / "spiece.model").vocab_size
  features = af.pipeline("feature-extraction", model=str(workdir))(["yes the film"])
  assert np.asarray(features[0]).shape[-1] == 32  # the tiny checkpoint's hidden size
