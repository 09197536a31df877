"""save_pretrained's README.md model card (its numbers equal the checkpoint's) and push_to_hub's
errors without a network."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY
from finetune_testdata import make_tokenizer
from flax import traverse_util

import albert_flax as af
from albert_flax import sharding


def _table(card: str) -> dict[str, str]:
  """The card's "| name | value |" rows."""
  return dict(re.findall(r"^\| (\w+) \| (.+?) \|$", card, flags=re.M))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  config = af.AlbertConfig(**TINY, num_labels=3, label_names=("neg", "neu", "pos"))
  model = af.AlbertForSequenceClassification(config)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
  return model, sharding.unbox(params), make_tokenizer(str(tmp_path_factory.mktemp("spm")))


@pytest.mark.parametrize("format", ["orbax", "hf"])
def test_card_numbers_equal_the_checkpoints(classifier, format, tmp_path):
  import sentencepiece as spm

  model, params, spiece = classifier
  af.save_pretrained(tmp_path, model, params, format=format, tokenizer=spiece)
  card = (tmp_path / "README.md").read_text()
  _, loaded = af.from_pretrained(tmp_path, af.AlbertForSequenceClassification)
  sizes = {"/".join(k): int(np.size(v)) for k, v in traverse_util.flatten_dict(loaded).items()}
  table = _table(card)
  assert int(table["total"].replace(",", "")) == sum(sizes.values())
  for part in ("embeddings", "encoder", "pooler"):
    expected = sum(n for p, n in sizes.items() if p.startswith(f"albert/{part}/"))
    assert int(table[part].replace(",", "")) == expected > 0, part
  assert (
    int(table["heads"].replace(",", "")) == sizes["classifier/kernel"] + sizes["classifier/bias"]
  )
  for field in ("vocab_size", "hidden_size", "num_hidden_layers", "inner_group_num"):
    assert table[field] == str(getattr(model.config, field))
  assert table["labels"] == "3: neg, neu, pos"
  pieces = spm.SentencePieceProcessor(model_file=spiece).get_piece_size()
  assert f"with {pieces:,} pieces" in card
  assert "pipeline_tag: text-classification" in card and f"`{format}` format" in card
  assert "## Intended use and limits" in card and "## Training" not in card


def test_card_of_a_model_saved_in_a_workdir_has_its_data_and_final_metrics(classifier, tmp_path):
  model, params, _ = classifier
  rows = [
    {"step": 10, "loss": 2.5},
    {"step": 10, "accuracy": 0.25, "split": "eval"},
    {"step": 20, "loss": 1.25},
    {"step": 20, "accuracy": 0.75, "split": "eval"},
  ]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  config = {"data": {"train_files": "corpus/*.txt", "tfds_name": ""}}
  (tmp_path / "train_config.json").write_text(json.dumps(config))
  af.save_pretrained(tmp_path / "model", model, params)
  card = (tmp_path / "model" / "README.md").read_text()
  assert "Training data: text files `corpus/*.txt`." in card
  assert "- train (step 20): loss = 1.25" in card
  assert "- eval (step 20): accuracy = 0.75" in card
  assert "0.25" not in card and "2.5" not in card  # only the last row of each split


def test_a_readme_we_did_not_write_is_kept(classifier, tmp_path):
  model, params, _ = classifier
  (tmp_path / "README.md").write_text("my own notes\n")
  af.save_pretrained(tmp_path, model, params, format="hf")
  assert (tmp_path / "README.md").read_text() == "my own notes\n"
  (tmp_path / "README.md").unlink()
  af.save_pretrained(tmp_path, model, params, format="hf")  # ours: rewritten on the next save
  af.save_pretrained(tmp_path, model, params, format="hf")
  assert "albert-flax" in (tmp_path / "README.md").read_text()


def test_push_to_hub_offline_and_unreachable_give_clear_errors(classifier, tmp_path, monkeypatch):
  model, params, _ = classifier
  with pytest.raises(FileNotFoundError, match="not a saved model"):
    af.push_to_hub("me/tiny", tmp_path)
  af.save_pretrained(tmp_path, model, params, format="hf")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  with pytest.raises(OSError, match="HF_HUB_OFFLINE is set"):
    af.push_to_hub("me/tiny", tmp_path, token="hf_test")
  monkeypatch.setenv("HF_HUB_OFFLINE", "0")
  # Port 9 (discard) on the loopback: nothing listens, the connection is refused at once.
  with pytest.raises(OSError, match=r"Could not push .* on http://127.0.0.1:9 \(") as error:
    af.push_to_hub("me/tiny", tmp_path, token="hf_test", endpoint="http://127.0.0.1:9")
  assert "Check your network" in str(error.value)
