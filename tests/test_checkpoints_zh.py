"""Chinese checkpoints: Google's albert_*_zh and brightmart albert_zh TF1 layouts, and transformers
directories with a WordPiece vocabulary, each loaded with logit parity on Chinese text.

Each TF checkpoint is written here by a TF1 Saver with the variable names the original code gives
(spelled out name by name from google-research/albert's and brightmart/albert_zh's modeling.py).
References: transformers' PyTorch AlbertForMaskedLM (Google's layout: same model), and, for
albert_zh, its graph (projection before the position embeddings, the transposed projection in the
MLM head) written out in numpy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY, forward, torch_reference
from tf_checkpoints import original_config, original_variables, save_tf1

import albert_flax as af

# Every CJK character of TEXT is a token, as in BERT's Chinese vocabulary; a few English pieces
# show the "##" rule inside Chinese text.
TEXT = ["我爱北京天安门，今天天气很好。", "我们用albert模型学习中文！", "北京的公园很大"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(path, size: int = TINY["vocab_size"]) -> list[str]:
  """A BERT-style vocab.txt of `size` entries covering TEXT; returns the tokens."""
  chars = sorted({c for t in TEXT for c in t if not c.isascii()})
  tokens = SPECIALS + ["al", "##bert", "##ber", "##t"] + chars
  tokens += [f"[unused{i}]" for i in range(size - len(tokens))]
  assert len(tokens) == size
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(tokens) + "\n")
  return tokens


def encode(directory):
  """input_ids, attention_mask, token_type_ids of TEXT through the directory's vocabulary
  (the tokenizer af.load_tokenizer finds for the checkpoint)."""
  tokenizer = af.load_tokenizer(str(directory))
  enc = tokenizer(TEXT, padding="max_length", max_length=18, truncation=True, return_tensors="np")
  assert (enc["input_ids"] != tokenizer.unk_token_id).all()  # the vocabulary covers the text
  assert tokenizer.convert_ids_to_tokens(enc["input_ids"][1])[4:6] == ["al", "##bert"]
  return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


def masked_lm_logits(model, params, inputs) -> np.ndarray:
  return np.asarray(forward(model, params, *inputs, output_hidden_states=False).logits)


def assert_close_where_attended(ours, theirs, mask, tol=2e-4):
  np.testing.assert_allclose(ours[mask == 1], theirs[mask == 1], rtol=tol, atol=tol)


# ---------------------------------------------------------------- Google's albert_*_zh


def test_google_chinese_checkpoint_loads_with_parity(tmp_path):
  """albert_base_zh's layout: albert_config.json with relu, vocab_chinese.txt, model.ckpt-best."""
  import torch

  c = dict(num_hidden_groups=1, inner_group_num=1, hidden_act="relu")
  reference = torch_reference("AlbertForMaskedLM", seed=3, **c)
  save_tf1(tmp_path, "model.ckpt-best", original_variables(reference))
  config = original_config(reference.config, "relu")
  (tmp_path / "albert_config.json").write_text(json.dumps(config))
  write_vocab(tmp_path / "vocab_chinese.txt")
  inputs = encode(tmp_path)

  model, params = af.from_pretrained(tmp_path, af.AlbertForMaskedLM)
  assert model.config.hidden_act == "relu"
  with torch.no_grad():
    expected = reference(
      *(torch.tensor(x) for x in inputs[:1]),
      attention_mask=torch.tensor(inputs[1]),
      token_type_ids=torch.tensor(inputs[2]),
    ).logits.numpy()
  assert_close_where_attended(masked_lm_logits(model, params, inputs), expected, inputs[1])


# ------------------------------------------------------------------ brightmart albert_zh


def _gelu_tanh(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _layer_norm(x, gamma, beta):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-12) * gamma + beta


def brightmart_forward(v, config, ids, mask, types, layer_scope) -> np.ndarray:
  """albert_zh's BertModel + get_masked_lm_output (modeling.py / run_pretraining.py), in float64:
  logits [batch, seq, vocab]."""
  v = {k: a.astype(np.float64) for k, a in v.items()}
  act = {"gelu": _gelu_tanh, "relu": lambda x: np.maximum(x, 0)}[config["hidden_act"]]
  e = "bert/embeddings/"
  seq = ids.shape[1]
  # embedding_lookup_factorized: [V, E] table, then [E, H] projection; then the H-wide postprocessor
  x = v[e + "word_embeddings"][ids] @ v[e + "word_embeddings_2"]
  x = x + v[e + "token_type_embeddings"][types] + v[e + "position_embeddings"][:seq]
  x = _layer_norm(x, v[e + "LayerNorm/gamma"], v[e + "LayerNorm/beta"])
  heads = config["num_attention_heads"]
  size = config["hidden_size"] // heads
  adder = (1.0 - mask[:, None, None, :]) * -10000.0

  def dense(h, scope):
    return h @ v[scope + "/kernel"] + v[scope + "/bias"]

  def split(h):
    return h.reshape(*h.shape[:2], heads, size).transpose(0, 2, 1, 3)

  for step in range(config["num_hidden_layers"]):
    s = f"bert/encoder/{layer_scope(step)}/"
    q, k, val = (split(dense(x, s + f"attention/self/{n}")) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size) + adder
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ val).transpose(0, 2, 1, 3).reshape(x.shape)
    attention = dense(context, s + "attention/output/dense")
    attention = _layer_norm(
      attention + x,
      v[s + "attention/output/LayerNorm/gamma"],
      v[s + "attention/output/LayerNorm/beta"],
    )
    out = dense(act(dense(attention, s + "intermediate/dense")), s + "output/dense")
    x = _layer_norm(
      out + attention, v[s + "output/LayerNorm/gamma"], v[s + "output/LayerNorm/beta"]
    )
  p = "cls/predictions/transform/"
  h = _layer_norm(act(dense(x, p + "dense")), v[p + "LayerNorm/gamma"], v[p + "LayerNorm/beta"])
  return (h @ v[e + "word_embeddings_2"].T) @ v[e + "word_embeddings"].T + v[
    "cls/predictions/output_bias"
  ]


@pytest.mark.parametrize("variant", ["shared-gelu", "unshared-relu"])
def test_brightmart_albert_zh_checkpoint_loads_with_parity(tmp_path, variant):
  """albert_zh's albert_tiny layout: albert_config_tiny.json (ln_type postln), albert_model.ckpt,
  vocab.txt; one shared `layer_shared` scope (their default) or one `layer_<n>` per step."""
  shared, act = variant.split("-")
  vocab, emb, hidden, inter, layers = TINY["vocab_size"], 8, 32, 37, 3
  config = {
    "attention_probs_dropout_prob": 0.0,
    "directionality": "bidi",
    "hidden_act": act,
    "hidden_dropout_prob": 0.0,
    "hidden_size": hidden,
    "embedding_size": emb,
    "initializer_range": 0.02,
    "intermediate_size": inter,
    "max_position_embeddings": 24,
    "num_attention_heads": 4,
    "num_hidden_layers": layers,
    "pooler_fc_size": 768,
    "pooler_type": "first_token_transform",
    "type_vocab_size": 2,
    "vocab_size": vocab,
    "ln_type": "postln",
  }
  rng = np.random.default_rng(0)

  def normal(*shape, scale=0.3):
    return (scale * rng.standard_normal(shape)).astype(np.float32)

  e = "bert/embeddings/"
  v = {
    e + "word_embeddings": normal(vocab, emb),
    e + "word_embeddings_2": normal(emb, hidden),
    e + "token_type_embeddings": normal(2, hidden),
    e + "position_embeddings": normal(24, hidden),
    e + "LayerNorm/gamma": 1 + normal(hidden),
    e + "LayerNorm/beta": normal(hidden),
    "bert/pooler/dense/kernel": normal(hidden, hidden),
    "bert/pooler/dense/bias": normal(hidden),
    "cls/predictions/transform/dense/kernel": normal(hidden, hidden),
    "cls/predictions/transform/dense/bias": normal(hidden),
    "cls/predictions/transform/LayerNorm/gamma": 1 + normal(hidden),
    "cls/predictions/transform/LayerNorm/beta": normal(hidden),
    "cls/predictions/output_bias": normal(vocab),
    "cls/seq_relationship/output_weights": normal(2, hidden),
    "cls/seq_relationship/output_bias": normal(2),
  }
  scopes = ["layer_shared"] if shared == "shared" else [f"layer_{n}" for n in range(layers)]
  for scope in scopes:
    s = f"bert/encoder/{scope}/"
    for name, shape in (
      ("attention/self/query", (hidden, hidden)),
      ("attention/self/key", (hidden, hidden)),
      ("attention/self/value", (hidden, hidden)),
      ("attention/output/dense", (hidden, hidden)),
      ("intermediate/dense", (hidden, inter)),
      ("output/dense", (inter, hidden)),
    ):
      v[s + name + "/kernel"] = normal(*shape)
      v[s + name + "/bias"] = normal(shape[1])
    for name in ("attention/output/LayerNorm", "output/LayerNorm"):
      v[s + name + "/gamma"] = 1 + normal(hidden)
      v[s + name + "/beta"] = normal(hidden)
  save_tf1(tmp_path, "albert_model.ckpt", v, slot="lamb")
  (tmp_path / "albert_config_tiny.json").write_text(json.dumps(config))
  write_vocab(tmp_path / "vocab.txt")
  inputs = encode(tmp_path)

  model, params = af.from_pretrained(tmp_path, af.AlbertForMaskedLM)
  assert model.config.hidden_act == ("gelu_new" if act == "gelu" else "relu")
  assert model.config.embedding_size == hidden  # the projection folded into the word table
  layer_scope = (lambda n: "layer_shared") if shared == "shared" else (lambda n: f"layer_{n}")
  expected = brightmart_forward(v, config, *inputs, layer_scope)
  assert_close_where_attended(masked_lm_logits(model, params, inputs), expected, inputs[1])
  # The SOP head and pooler come along for pretraining.
  _, pretraining = af.from_pretrained(tmp_path)
  np.testing.assert_array_equal(
    pretraining["sop_classifier"]["classifier"]["kernel"],
    v["cls/seq_relationship/output_weights"].T,
  )


def test_brightmart_pre_ln_is_refused(tmp_path):
  save_tf1(
    tmp_path, "albert_model.ckpt", {"bert/encoder/layer_shared/output/dense/bias": np.zeros(4)}
  )
  (tmp_path / "albert_config_xxlarge.json").write_text(
    json.dumps(
      {
        "hidden_act": "gelu",
        "hidden_size": 4,
        "embedding_size": 2,
        "intermediate_size": 8,
        "num_attention_heads": 1,
        "num_hidden_layers": 2,
        "vocab_size": 10,
        "ln_type": "preln",
      }
    )
  )
  with pytest.raises(ValueError, match="pre-LayerNorm"):
    af.from_pretrained(tmp_path)


# -------------------------------------------------- transformers' albert_chinese_* directories


def test_transformers_directory_with_wordpiece_vocab_loads_with_parity(tmp_path, monkeypatch):
  """An AlbertForMaskedLM saved by transformers with a BertTokenizer (voidful/albert_chinese_*),
  from a directory and through a Hub id (whose download takes the vocabulary along)."""
  import huggingface_hub
  import torch
  import transformers

  reference = torch_reference("AlbertForMaskedLM", seed=5)
  reference.save_pretrained(tmp_path)
  write_vocab(tmp_path / "vocab.txt")
  transformers.BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
  inputs = encode(tmp_path)

  model, params = af.from_pretrained(tmp_path, af.AlbertForMaskedLM)
  with torch.no_grad():
    expected = reference(
      torch.tensor(inputs[0]),
      attention_mask=torch.tensor(inputs[1]),
      token_type_ids=torch.tensor(inputs[2]),
    ).logits.numpy()
  assert_close_where_attended(masked_lm_logits(model, params, inputs), expected, inputs[1])

  patterns = []

  def fake_snapshot_download(repo_id, allow_patterns, **kwargs):
    patterns.extend(allow_patterns)
    return str(tmp_path)

  monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
  _, from_hub = af.from_pretrained("voidful/albert_chinese_tiny", af.AlbertForMaskedLM)
  assert "vocab.txt" in patterns and "tokenizer_config.json" in patterns
  np.testing.assert_array_equal(
    from_hub["albert"]["embeddings"]["word_embeddings"]["embedding"],
    params["albert"]["embeddings"]["word_embeddings"]["embedding"],
  )
