"""af.pipeline on a tiny model and a test-trained sentencepiece model, each task against the same
computation done by hand (tokenizer + model.apply + numpy)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import TINY
from finetune_testdata import make_tokenizer

import albert_flax as af
from albert_flax import checkpoints

MAX_LENGTH = 24  # buckets 16, 24


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """task -> a saved tiny model directory (random weights, spiece.model beside them)."""
  root = tmp_path_factory.mktemp("pipelines")
  spiece = make_tokenizer(str(root))
  config = af.AlbertConfig(
    **{
      **TINY,
      "max_position_embeddings": 32,
      "vocab_size": af.AlbertTokenizer(spiece).vocab_size,
    },
    num_labels=3,
    label_names=("negative", "neutral", "positive"),
  )
  rng = np.random.default_rng(0)
  directories = {}
  for task, cls in (
    ("fill-mask", af.AlbertForMaskedLM),
    ("text-classification", af.AlbertForSequenceClassification),
    ("question-answering", af.AlbertForQuestionAnswering),
    ("feature-extraction", af.AlbertModel),
  ):
    model = cls(config)
    # Random weights without compiling an init: N(0, 0.3) everywhere, LayerNorm scales near 1.
    params = {
      path: (1.0 if path.endswith("scale") else 0.0)
      + 0.3 * rng.standard_normal(like.shape).astype(np.float32)
      for path, like in checkpoints.expected_shapes(model).items()
    }
    tree = {}
    for path, value in params.items():
      node = tree
      *parents, leaf = path.split("/")
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = value
    directories[task] = af.save_pretrained(root / task, model, tree, tokenizer=spiece)
  return directories


def _by_hand(directory, cls, texts, pairs=None, max_length=MAX_LENGTH):
  """Tokenize (truncate, pad to the longest), run the model once: (encoding, output)."""
  model, params = af.from_pretrained(directory, cls)
  tok = af.AlbertTokenizer(f"{directory}/spiece.model")
  enc = tok(texts, pairs, max_length=max_length, truncation=True, padding=True, return_tensors="np")
  out = jax.jit(model.apply)(
    {"params": params},
    enc["input_ids"],
    attention_mask=enc["attention_mask"],
    token_type_ids=enc["token_type_ids"],
  )
  return tok, enc, jax.device_get(out)


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_fill_mask(saved):
  texts = ["the river [MASK] big house", "john saw a [MASK] film in paris"]
  fill = af.pipeline("fill-mask", model=saved["fill-mask"], batch_size=4, max_length=MAX_LENGTH)
  got = fill(texts)
  tok, enc, out = _by_hand(saved["fill-mask"], af.AlbertForMaskedLM, texts)
  for row, result in enumerate(got):
    position = int(np.flatnonzero(enc["input_ids"][row] == tok.mask_token_id)[0])
    probs = _softmax(out.logits[row, position].astype(np.float64))
    top = np.argsort(-probs)[:5]
    assert [r["token"] for r in result] == top.tolist()
    np.testing.assert_allclose([r["score"] for r in result], probs[top], rtol=1e-4)
    ids = enc["input_ids"][row][enc["attention_mask"][row] == 1].copy()
    ids[position] = top[0]
    assert result[0]["sequence"] == tok.decode(ids, skip_special_tokens=True)
    assert result[0]["token_str"] == tok.decode([int(top[0])])
  # A single text gives its list of fillers; the same bucket compiles nothing new.
  assert fill(texts[0]) == got[0] and fill.traces == 1
  long = "the big red house " * 4 + "[MASK]"  # > 16 tokens: the next bucket
  assert len(fill(long)) == 5 and fill.traces == 2
  with pytest.raises(ValueError, match=r"no \[MASK\]"):
    fill("no mask here")


def test_text_classification_labels_batching_and_truncation(saved):
  texts = ["great film", "awful movie in london", "the city " * 20]  # the last one is truncated
  classify = af.pipeline(
    "text-classification", model=saved["text-classification"], batch_size=2, max_length=MAX_LENGTH
  )
  got = classify(texts)
  _, _, out = _by_hand(saved["text-classification"], af.AlbertForSequenceClassification, texts)
  probs = _softmax(out.logits.astype(np.float64))
  names = ("negative", "neutral", "positive")
  assert [r["label"] for r in got] == [names[i] for i in probs.argmax(-1)]
  np.testing.assert_allclose([r["score"] for r in got], probs.max(-1), rtol=1e-4)
  single = classify(texts[0])
  assert isinstance(single, list) and single[0] == got[0]
  everything = classify(texts[1], top_k=None)
  assert [r["label"] for r in everything] == [names[i] for i in np.argsort(-probs[1])]
  pair = classify({"text": "great film", "text_pair": "awful movie"})
  _, _, pair_out = _by_hand(
    saved["text-classification"],
    af.AlbertForSequenceClassification,
    ["great film"],
    ["awful movie"],
  )
  np.testing.assert_allclose(pair[0]["score"], _softmax(pair_out.logits[0]).max(), rtol=1e-4)


def test_question_answering(saved):
  question, context = "who went to paris", "john went to paris and mary saw the river"
  qa = af.pipeline("question-answering", model=saved["question-answering"])
  got = qa(question=question, context=context)
  tok, enc, out = _by_hand(
    saved["question-answering"], af.AlbertForQuestionAnswering, question, context, max_length=32
  )
  q_len = len(tok.encode_as_ids(question))
  c_ids = tok.encode_as_ids(context)
  first = q_len + 2
  p_start = _softmax(out.start_logits[0, first : first + len(c_ids)].astype(np.float64))
  p_end = _softmax(out.end_logits[0, first : first + len(c_ids)].astype(np.float64))
  best = max(
    (p_start[i] * p_end[j], i, j)
    for i in range(len(c_ids))
    for j in range(i, min(len(c_ids), i + 15))
  )
  np.testing.assert_allclose(got["score"], best[0], rtol=1e-4)
  answer = tok.decode(c_ids[best[1] : best[2] + 1])
  assert got["answer"] == context[got["start"] : got["end"]]
  assert got["answer"].replace(" ", "") == answer.replace(" ", "")
  assert qa([{"question": question, "context": context}] * 3) == [got] * 3


def test_question_answering_long_context_windows(saved):
  """A context longer than max_length leaves room for: overlapping windows (stride tokens
  shared), a softmax per window over its context tokens, the best span over all windows."""
  question = "who saw the river"
  context = (
    "john went to paris and mary saw the river near the big red house in london "
    "the city had a film and the river ran past the house where john saw mary"
  )
  directory, stride = saved["question-answering"], 4
  qa = af.pipeline("question-answering", model=directory, batch_size=2, max_length=MAX_LENGTH)
  got = qa(question=question, context=context, doc_stride=stride)

  # By hand: cut the context's tokens into windows of the room left, each starting
  # room - stride tokens after the previous one, the last reaching the end.
  model, params = af.from_pretrained(directory, af.AlbertForQuestionAnswering)
  tok = af.AlbertTokenizer(f"{directory}/spiece.model")
  q_ids = tok.encode_as_ids(question)
  enc = tok(context, add_special_tokens=False, return_offsets_mapping=True)
  c_ids, offsets = enc["input_ids"], enc["offset_mapping"]
  room = MAX_LENGTH - len(q_ids) - 3
  starts = [0]
  while starts[-1] + room < len(c_ids):
    starts.append(starts[-1] + room - stride)
  assert len(starts) >= 3
  ids = np.zeros((len(starts), MAX_LENGTH), np.int32)
  types, mask = np.zeros_like(ids), np.zeros_like(ids)
  for row, start in enumerate(starts):
    window = [tok.cls_token_id, *q_ids, tok.sep_token_id, *c_ids[start : start + room]]
    window.append(tok.sep_token_id)
    ids[row, : len(window)] = window
    mask[row, : len(window)] = 1
    types[row, len(q_ids) + 2 : len(window)] = 1
  out = jax.device_get(
    jax.jit(model.apply)({"params": params}, ids, attention_mask=mask, token_type_ids=types)
  )
  first, candidates = len(q_ids) + 2, []
  for row, start in enumerate(starts):
    n = min(room, len(c_ids) - start)
    p_start = _softmax(out.start_logits[row, first : first + n].astype(np.float64))
    p_end = _softmax(out.end_logits[row, first : first + n].astype(np.float64))
    for i in range(n):
      for j in range(i, min(n, i + 15)):
        candidates.append((p_start[i] * p_end[j], -row, start + i, start + j))
  score, row, i, j = max(candidates)
  assert row < 0  # the best span is not in the first window (which a cut context would keep)
  np.testing.assert_allclose(got["score"], score, rtol=1e-4)
  assert (got["start"], got["end"]) == (offsets[i][0], offsets[j][1])
  assert got["answer"] == context[got["start"] : got["end"]]
  # Windows of several inputs share batches; each input gets its own best span.
  # (One window of 22 tokens: the 24 bucket, already compiled.)
  short = {"question": question, "context": "mary saw the river near the big red house in london"}
  both = qa([short, {"question": question, "context": context}], doc_stride=stride)
  for mixed, alone in ((both[0], qa(short)), (both[1], got)):
    assert mixed["answer"] == alone["answer"] and mixed["start"] == alone["start"]
    np.testing.assert_allclose(mixed["score"], alone["score"], rtol=1e-4)
  with pytest.raises(ValueError, match="stride"):
    qa(question=question, context=context, doc_stride=room)


def test_feature_extraction(saved):
  texts = ["john went to paris", "the river"]
  extract = af.pipeline("feature-extraction", model=saved["feature-extraction"])
  got = extract(texts)
  _, enc, out = _by_hand(saved["feature-extraction"], af.AlbertModel, texts)
  for row, features in enumerate(got):
    n = int(enc["attention_mask"][row].sum())
    assert np.shape(features) == (1, n, TINY["hidden_size"])
    np.testing.assert_allclose(features[0], out.last_hidden_state[row, :n], rtol=1e-4, atol=1e-5)
  assert np.shape(extract(texts[1])) == (1, int(enc["attention_mask"][1].sum()), 32)


def test_pipeline_errors(saved):
  with pytest.raises(ValueError, match="Unknown pipeline task"):
    af.pipeline("summarization", model=saved["fill-mask"])
  with pytest.raises(ValueError, match="max_length=99"):
    af.pipeline("feature-extraction", model=saved["feature-extraction"], max_length=99)
