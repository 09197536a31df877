"""Pretraining data pipeline: SOP pairs, n-gram whole-word masking, state, shares, sources.

Statistics run on a few thousand examples made from a corpus the test writes: pseudo-words built
from syllables (so the tokenizer splits many words into several pieces), unique sentences (so
every segment can be found again in its document).
"""

import json
import os
import random

import numpy as np
import pytest

from albert_flax.tokenization import AlbertTokenizer, train_tokenizer
from pretrain import corpus, data, masking, shards
from pretrain.examples import ExampleConfig, make_examples, tokenize_documents

S = 64  # max_seq_length of most tests: many examples from a small corpus
P = 10  # max_predictions_per_seq
_SYLLABLES = (
  "ka lo mi ne su ta ri po ve du shi gra mon tel bar quo fen wix lur zam dro pex sil tor"
).split()


def _write_corpus(directory, num_files=3, num_docs=240, seed=0):
  """Writes the corpus in the original format; returns (paths, documents as lists of sentences)."""
  rng = random.Random(seed)
  words = sorted(
    {"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(700)}
  )
  seen, docs = set(), []
  for d in range(num_docs):
    # Some one-sentence documents: they make no pair (and must not crash anything).
    n = 1 if d % 17 == 0 else rng.randint(2, 24)
    doc = []
    while len(doc) < n:
      s = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
      if s not in seen:
        seen.add(s)
        doc.append(s[0].upper() + s[1:] + ".")
    docs.append(doc)
  paths = []
  for f in range(num_files):
    path = os.path.join(directory, f"part-{f}.txt")
    with open(path, "w", encoding="utf-8") as out:
      out.write("\n\n".join("\n".join(doc) for doc in docs[f::num_files]) + "\n")
    paths.append(path)
  return paths, docs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  d = tmp_path_factory.mktemp("pretrain_data")
  paths, docs = _write_corpus(str(d))
  model = train_tokenizer(paths, 300, str(d / "spm"), seed=0, hard_vocab_limit=False, num_threads=2)
  tok = AlbertTokenizer(model)
  return {
    "dir": d,
    "glob": str(d / "part-*.txt"),
    "paths": paths,
    "docs": docs,
    "tok": tok,
    "model": model,
  }


def _batches(setup, n=None, **kw):
  kw = {"process_index": 0, "process_count": 1, "shuffle_buffer": 16, **kw}
  it = data.make_pretraining_batches(
    kw.pop("files", setup["glob"]),
    setup["tok"],
    kw.pop("batch_size", 32),
    kw.pop("max_seq_length", S),
    kw.pop("max_predictions_per_seq", P),
    kw.pop("seed", 0),
    **kw,
  )
  with it:
    return [b for _, b in zip(range(n), it)] if n else list(it)


def _cat(batches):
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _unmasked(b):
  """input_ids with the masked positions restored to their original tokens."""
  ids = b["input_ids"].copy()
  rows, slots = np.nonzero(b["masked_lm_weights"])
  ids[rows, b["masked_lm_positions"][rows, slots]] = b["masked_lm_ids"][rows, slots]
  return ids


@pytest.fixture(scope="module")
def epoch2(setup):
  """Two epochs of the default pipeline at S=64 (a few thousand examples)."""
  return _cat(_batches(setup, num_epochs=2))


# ----------------------------------------------------------------------------- layout


def test_layout_padding_and_lengths(setup, epoch2):
  b, tok = epoch2, setup["tok"]
  n = len(b["input_ids"])
  assert n > 1500
  assert {k: (v.dtype, v.shape[1:]) for k, v in b.items()} == {
    "input_ids": (np.int32, (S,)),
    "attention_mask": (np.int32, (S,)),
    "token_type_ids": (np.int32, (S,)),
    "masked_lm_positions": (np.int32, (P,)),
    "masked_lm_ids": (np.int32, (P,)),
    "masked_lm_weights": (np.float32, (P,)),
    "sentence_order_label": (np.int32, ()),
  }
  ids, mask, types = _unmasked(b), b["attention_mask"], b["token_type_ids"]
  length = mask.sum(1)
  j = np.arange(S)[None, :]
  assert (mask == (j < length[:, None])).all(), "attention mask is not a right-padded prefix"
  assert (ids[mask == 0] == tok.pad_token_id).all() and (types[mask == 0] == 0).all()
  assert (ids[:, 0] == tok.cls_token_id).all()
  is_sep = ids == tok.sep_token_id
  assert (is_sep.sum(1) == 2).all() and (ids[np.arange(n), length - 1] == tok.sep_token_id).all()
  first_sep = is_sep.argmax(1)
  assert (first_sep >= 2).all() and (length - first_sep >= 3).all(), "a segment is empty"
  assert (types == ((j > first_sep[:, None]) & (j < length[:, None]))).all()
  assert ((ids == tok.cls_token_id).sum(1) == 1).all()
  assert length.max() == S and length.min() < S // 2  # full-length and short_seq_prob examples


def test_masking_rate_and_replacements(setup, epoch2):
  b, tok = epoch2, setup["tok"]
  orig = _unmasked(b)
  w = b["masked_lm_weights"]
  length = b["attention_mask"].sum(1)
  budget = np.minimum(P, np.maximum(1, np.rint(length * 0.15)))
  got = w.sum(1)
  assert (got <= budget).all() and (got >= 1).all()
  assert abs(got.sum() / length.sum() - 0.15) < 0.01, "masking rate"
  rows, slots = np.nonzero(w)
  pos = b["masked_lm_positions"][rows, slots]
  # Positions ascend within an example, weights are a prefix, padding predictions are zeros.
  assert (
    np.diff(np.where(w > 0, b["masked_lm_positions"], 10**6 + np.arange(P)), axis=1) > 0
  ).all()
  assert (w == (np.arange(P)[None, :] < got[:, None])).all()
  assert (b["masked_lm_positions"][w == 0] == 0).all() and (b["masked_lm_ids"][w == 0] == 0).all()
  # Never [CLS], [SEP] or padding.
  assert not np.isin(orig[rows, pos], [tok.pad_token_id, tok.cls_token_id, tok.sep_token_id]).any()
  assert (b["attention_mask"][rows, pos] == 1).all()
  # 80% [MASK], 10% random, 10% unchanged (a random draw equals the original ~1/vocab of the time).
  now = b["input_ids"][rows, pos]
  frac_mask = np.mean(now == tok.mask_token_id)
  frac_same = np.mean(now == orig[rows, pos])
  frac_random = 1 - frac_mask - frac_same
  assert (
    abs(frac_mask - 0.8) < 0.02 and abs(frac_same - 0.1) < 0.02 and abs(frac_random - 0.1) < 0.02
  )
  assert (now[now != orig[rows, pos]] != tok.pad_token_id).all()
  replaced = now[(now != orig[rows, pos]) & (now != tok.mask_token_id)]
  assert replaced.min() >= 5 and replaced.max() < tok.vocab_size
  # Unmasked positions are untouched.
  untouched = np.ones(b["input_ids"].shape, bool)
  untouched[rows, pos] = False
  assert (b["input_ids"][untouched] == orig[untouched]).all()


def test_masks_are_whole_words(setup, epoch2):
  b, tok = epoch2, setup["tok"]
  orig = _unmasked(b)
  masked = np.zeros(orig.shape, bool)
  rows, slots = np.nonzero(b["masked_lm_weights"])
  masked[rows, b["masked_lm_positions"][rows, slots]] = True
  special = np.isin(orig, [tok.pad_token_id, tok.cls_token_id, tok.sep_token_id])
  prev_special = np.ones_like(special)
  prev_special[:, 1:] = special[:, :-1]
  starts = ~special & (tok.word_start_mask[orig] | prev_special)
  # A run of masked tokens begins at a word start and is followed by a word start or a special.
  run_start = masked & ~np.pad(masked, ((0, 0), (1, 0)))[:, :-1]
  run_end_next = np.pad(masked, ((0, 0), (0, 1)))[:, :-1] & ~np.pad(masked, ((0, 0), (0, 1)))[:, 1:]
  after = np.pad(starts | special, ((0, 0), (0, 1)), constant_values=True)[:, 1:]
  assert starts[run_start].all(), "a masked span starts inside a word"
  assert after[run_end_next].all(), "a masked span ends inside a word"
  # Multi-piece words do get masked (the test would be empty otherwise).
  word_len_2 = masked & ~starts & ~special
  assert word_len_2.sum() > 100


def test_ngram_span_lengths():
  # Words of one piece and a large budget: the first span of each example is never shortened or
  # rejected, so its length follows p(n) ∝ 1/n exactly; all spans follow it closely (the
  # original's procedure rejects overlapping candidates and shortens at the budget: shorter).
  rng = np.random.default_rng(0)
  n_ex, seq = 6000, 256
  vocab = 1000
  ids = rng.integers(5, vocab, (n_ex, seq)).astype(np.int32)
  ids[:, 0], ids[:, 100], ids[:, -1] = 2, 3, 3
  word_start = np.ones(vocab, bool)
  m = masking.mask_examples(ids, np.full(n_ex, seq), word_start, rng, max_predictions_per_seq=64)
  expected = np.array([6, 3, 2]) / 11
  first = m.spans[np.unique(m.spans[:, 0], return_index=True)[1]]
  assert len(first) == n_ex
  np.testing.assert_allclose(np.bincount(first[:, 2], minlength=4)[1:] / n_ex, expected, atol=0.02)
  overall = np.bincount(m.spans[:, 2], minlength=4)[1:] / len(m.spans)
  np.testing.assert_allclose(overall, expected, atol=0.05)
  # Spans never overlap and cover exactly the predictions.
  assert m.masked_lm_weights.sum() == m.spans[:, 2].sum()
  assert masking.ngram_probabilities(3) == pytest.approx(expected)


def _locate(setup):
  """Finder of a token segment in the corpus: -> (document index, token offset) or None."""
  tok = setup["tok"]
  streams = [
    np.concatenate([np.asarray(x, np.int32) for x in tok.encode_as_ids(doc)])
    for doc in setup["docs"]
  ]
  big = np.concatenate([np.append(s, -1) for s in streams]).astype(np.int32)
  starts = np.concatenate([[0], np.cumsum([len(s) + 1 for s in streams])])
  raw = big.tobytes()

  def find(seg):
    needle = np.asarray(seg, np.int32).tobytes()
    hits, at = [], raw.find(needle)
    while at >= 0 and len(hits) < 2:
      if at % 4 == 0:
        hits.append(at // 4)
      at = raw.find(needle, at + 1)
    if len(hits) != 1:
      return None  # absent or ambiguous
    d = int(np.searchsorted(starts, hits[0], side="right")) - 1
    return d, hits[0] - starts[d]

  return find


def test_sentence_order_pairs(setup, epoch2):
  b = epoch2
  labels = b["sentence_order_label"]
  assert abs(labels.mean() - 0.5) < 0.04
  orig = _unmasked(b)
  sep = setup["tok"].sep_token_id
  find = _locate(setup)
  checked = 0
  for ids, label in zip(orig[:800], labels[:800]):
    s1, s2 = np.nonzero(ids == sep)[0]
    first, second = ids[1:s1], ids[s1 + 1 : s2]
    if min(len(first), len(second)) < 8:
      continue  # short segments may occur twice in the corpus
    a, c = find(first), find(second)
    assert a is not None and c is not None, "a segment is not a contiguous run of its document"
    assert a[0] == c[0], "segments from two documents (random-document negative)"
    if label == 0:
      assert a[1] + len(first) <= c[1]
    else:  # swapped: the first segment comes later in the document
      assert c[1] + len(second) <= a[1]
    checked += 1
  assert checked > 300


def test_pairs_use_whole_sentences(setup):
  # Without truncation (long max length), segment A is whole sentences and B the following ones.
  tok = setup["tok"]
  docs = setup["docs"][:40]
  t = tokenize_documents(docs, tok)
  ex = make_examples(t, ExampleConfig(2048, 20, short_seq_prob=0.0), tok, (0,), mask=False)
  sentences = {tuple(x) for doc in docs for x in tok.encode_as_ids(doc)}
  sep = tok.sep_token_id
  for ids, length, _label in zip(ex["input_ids"], ex["length"], ex["sentence_order_label"]):
    ids = ids[:length]
    s1 = int(np.nonzero(ids == sep)[0][0])
    for seg in (ids[1:s1], ids[s1 + 1 : -1]):
      # Greedily peel known sentences off the front: every segment is whole sentences.
      seg = tuple(seg)
      while seg:
        n = next((k for k in range(1, len(seg) + 1) if seg[:k] in sentences), None)
        assert n is not None, "a segment does not start with a whole sentence"
        seg = seg[n:]
  # Documents of one sentence make no example; every other document makes exactly one here.
  assert len(ex["input_ids"]) == sum(len(d) >= 2 for d in docs)


# ----------------------------------------------------------------------------- determinism, state


def test_deterministic_and_seeded(setup):
  a = _batches(setup, 6)
  b = _batches(setup, 6)
  c = _batches(setup, 6, seed=1)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert not np.array_equal(a[0]["input_ids"], c[0]["input_ids"])


def test_dynamic_masking_differs_between_epochs(setup):
  one = _batches(setup, num_epochs=1, shuffle_buffer=10**6, short_seq_prob=0.0, batch_size=1)
  two = _batches(setup, num_epochs=2, shuffle_buffer=10**6, short_seq_prob=0.0, batch_size=1)
  # Same documents, new pairs and masks in the second epoch.
  assert 1.8 * len(one) < len(two) < 2.2 * len(one)
  e0 = {tuple(b["input_ids"][0]) for b in two[: len(one)]}
  e1 = {tuple(b["input_ids"][0]) for b in two[len(one) :]}
  assert len(e0 & e1) < 0.05 * len(e0)


def test_resume_mid_stream_equals_uninterrupted(setup):
  full = _batches(setup, 40, batch_size=24, num_epochs=None)
  it = data.make_pretraining_batches(
    setup["glob"], setup["tok"], 24, S, P, 0, process_index=0, process_count=1, shuffle_buffer=16
  )
  for _ in range(17):
    next(it)
  state = json.loads(json.dumps(it.get_state()))  # survives a JSON round trip
  assert len(json.dumps(state)) < 400
  resumed = data.make_pretraining_batches(
    setup["glob"],
    setup["tok"],
    24,
    S,
    P,
    0,
    process_index=0,
    process_count=1,
    shuffle_buffer=16,
    state=state,
  )
  rest = [next(resumed) for _ in range(23)]
  # ... including across window and epoch boundaries (one epoch is ~33 batches here).
  for x, y in zip(full[17:], rest):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  # set_state on a running iterator rewinds it.
  it.set_state(state)
  np.testing.assert_array_equal(next(it)["input_ids"], full[17]["input_ids"])
  with pytest.raises(ValueError, match="seed"):
    data.make_pretraining_batches(
      setup["glob"], setup["tok"], 24, S, P, 1, process_index=0, process_count=1, state=state
    )
  with pytest.raises(ValueError, match="other data settings"):
    data.make_pretraining_batches(
      setup["glob"],
      setup["tok"],
      24,
      S,
      P,
      0,
      process_index=0,
      process_count=1,
      shuffle_buffer=17,
      state=state,
    )
  it.close()
  resumed.close()


def test_workers_give_the_same_stream(setup):
  a = _batches(setup, 12, num_workers=0)
  b = _batches(setup, 12, num_workers=2)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


# ----------------------------------------------------------------------------- shares and splits


@pytest.mark.parametrize("shard_by", ["file", "document"])
def test_disjoint_process_shares(setup, shard_by):
  source = corpus.TextFileSource(setup["glob"], shard_by=shard_by)
  shares = [[tuple(doc) for doc, _ in source.documents(0, None, p, 3, seed=0)] for p in range(3)]
  flat = [d for share in shares for d in share]
  assert len(flat) == len(set(flat)) == len(setup["docs"])
  assert min(len(s) for s in shares) > 50
  # The pipeline's examples per process come from that process's documents only.
  find = _locate(setup)
  doc_ids = {tuple(d): i for i, d in enumerate(setup["docs"])}
  for p in (0, 2):
    b = _cat(_batches(setup, num_epochs=1, process_index=p, process_count=3, shard_by=shard_by))
    mine = {doc_ids[d] for d in shares[p]}
    sep = setup["tok"].sep_token_id
    for ids in _unmasked(b)[:200]:
      seg = ids[1 : np.nonzero(ids == sep)[0][0]]
      hit = find(seg) if len(seg) >= 8 else None
      assert hit is None or hit[0] in mine


def test_eval_split_is_held_out(setup):
  source = corpus.TextFileSource(setup["glob"])
  docs = [doc for doc, _ in source.documents(0, None, 0, 1)]
  train = [d for d, _ in corpus.select_split(((d, {}) for d in docs), "train", 0.2)]
  ev = [d for d, _ in corpus.select_split(((d, {}) for d in docs), "eval", 0.2)]
  assert len(train) + len(ev) == len(docs) and 0.1 < len(ev) / len(docs) < 0.3
  assert not {tuple(d) for d in train} & {tuple(d) for d in ev}
  out = data.split_corpus(setup["glob"], str(setup["dir"] / "split"), eval_fraction=0.2)
  written = open(out[1], encoding="utf-8").read().strip().split("\n\n")
  assert sorted(written) == sorted("\n".join(d) for d in ev)
  b = _batches(setup, 2, split="eval", eval_fraction=0.2)
  assert b[0]["input_ids"].shape == (32, S)


def test_builtin_corpus(tmp_path, setup):
  from pretrain import builtin_corpus

  path = builtin_corpus.builtin_corpus_path(str(tmp_path))
  assert builtin_corpus.builtin_corpus_path(str(tmp_path)) == path  # cached
  docs = [d for d, _ in builtin_corpus.builtin_source(str(tmp_path)).documents(0, None, 0, 1)]
  assert len(docs) > 500 and all(len(d) >= 2 for d in docs)
  ev = [d for d, _ in corpus.select_split(((d, {}) for d in docs), "eval")]
  assert 0.005 < len(ev) / len(docs) < 0.05
  b = _batches(setup, 1, files="builtin:eval", cache_dir=str(tmp_path), max_seq_length=128)
  assert b[0]["input_ids"].shape == (32, 128)
  assert (b[0]["input_ids"][:, 0] == setup["tok"].cls_token_id).all()


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors(setup, tmp_path):
  empty = tmp_path / "empty.txt"
  empty.write_text("")
  with pytest.raises(ValueError, match=r"are empty: .*empty\.txt"):
    _batches(setup, 1, files=str(empty))
  with pytest.raises(FileNotFoundError, match="nothing-here"):
    _batches(setup, 1, files=str(tmp_path / "nothing-here*.txt"))
  binary = tmp_path / "binary.txt"
  binary.write_bytes(b"Good line.\n\xff\xfe bad bytes.\n")
  with pytest.raises(ValueError, match="binary.txt.*UTF-8"):
    _batches(setup, 1, files=str(binary))
  blank = tmp_path / "blank.txt"
  blank.write_text("\n\n  \n")
  with pytest.raises(ValueError, match="blank.txt.*no documents"):
    _batches(setup, 1, files=str(blank))
  single = tmp_path / "single.txt"
  single.write_text("One sentence only.\n\nAnother lonely sentence.\n")
  with pytest.raises(ValueError, match="single.txt.*no pretraining examples"):
    _batches(setup, 1, files=str(single))
  with pytest.raises(ValueError, match="max_seq_length"):
    _batches(setup, 1, max_seq_length=4)
  with pytest.raises(ValueError, match="split"):
    _batches(setup, 1, split="test")
  with pytest.raises(ValueError, match="process_index"):
    _batches(setup, 1, process_index=3, process_count=3)


# ----------------------------------------------------------------------------- static shards


def test_static_shards_round_trip(setup, tmp_path):
  from pretrain import create_data

  out = str(tmp_path / "shards")
  info = create_data.main(
    [
      f"--input={setup['glob']}",
      f"--spm_model={setup['model']}",
      f"--output_dir={out}",
      f"--max_seq_length={S}",
      "--dupe_factor=2",
      f"--max_predictions_per_seq={P}",
      "--num_shards=3",
      "--shuffle_buffer=32",
    ]
  )
  assert info["num_examples"] == sum(s["num_examples"] for s in info["shards"])
  with open(os.path.join(out, shards.INFO_FILE)) as f:
    assert json.load(f)["dupe_factor"] == 2
  with pytest.raises(FileExistsError, match="already holds"):
    create_data.main(
      [f"--input={setup['glob']}", f"--spm_model={setup['model']}", f"--output_dir={out}"]
    )
  # About twice the examples of one dynamic epoch (two variants of every document).
  one_epoch = sum(len(b["input_ids"]) for b in _batches(setup, num_epochs=1, drop_remainder=False))
  assert 1.8 < info["num_examples"] / one_epoch < 2.2
  # Read back: every record exactly once per epoch, as written (padded to a longer length too).
  source = shards.open_shards(os.path.join(out, "*.array_record"))
  written = shards.decode_records([source[i] for i in range(len(source))], S, P)
  got = _cat(
    _batches(
      setup,
      files=None,
      static_shards=os.path.join(out, "*.array_record"),
      num_epochs=1,
      drop_remainder=False,
      batch_size=50,
      shuffle_buffer=100,
    )
  )
  assert len(got["input_ids"]) == info["num_examples"]
  key = lambda ids, pos: sorted(map(bytes, np.concatenate([ids, pos], 1).astype(np.int32)))
  assert key(got["input_ids"], got["masked_lm_positions"]) == key(
    written["input_ids"], written["masked_lm_positions"]
  )
  longer = _batches(
    setup,
    1,
    files=os.path.join(out, "*.array_record"),
    max_seq_length=S + 8,
    max_predictions_per_seq=P + 2,
  )[0]
  assert longer["input_ids"].shape == (32, S + 8) and (longer["input_ids"][:, S:] == 0).all()
  assert (longer["masked_lm_weights"].sum(1) >= 1).all()
  with pytest.raises(ValueError, match="max_seq_length"):
    _batches(
      setup, 1, static_shards=os.path.join(out, "*.array_record"), files=None, max_seq_length=S - 8
    )
  # Static batches resume too.
  kw = dict(files=None, static_shards=os.path.join(out, "*.array_record"), shuffle_buffer=40)
  full = _batches(setup, 8, **kw)
  it = data.make_pretraining_batches(
    None,
    None,
    32,
    S,
    P,
    0,
    process_index=0,
    process_count=1,
    **{k: v for k, v in kw.items() if k != "files"},
  )
  for _ in range(3):
    next(it)
  it2 = data.make_pretraining_batches(
    None,
    None,
    32,
    S,
    P,
    0,
    process_index=0,
    process_count=1,
    state=it.get_state(),
    **{k: v for k, v in kw.items() if k != "files"},
  )
  np.testing.assert_array_equal(next(it2)["input_ids"], full[3]["input_ids"])
  it.close()
  it2.close()


def test_record_codec_round_trip(setup):
  tok = setup["tok"]
  ex = make_examples(tokenize_documents(setup["docs"][:30], tok), ExampleConfig(S, P), tok, (3,))
  back = shards.decode_records(shards.encode_records(ex), S, P)
  for k in ex:
    np.testing.assert_array_equal(ex[k], back[k])
  with pytest.raises(ValueError, match="not an albert-flax"):
    shards.decode_records([b"\x01\x02\x03"], S, P)


# ----------------------------------------------------------------------------- TFDS


def test_tfds_source(setup, tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from etils import epath

  (tmp_path / "pkg").mkdir()
  docs = setup["docs"]

  class PretrainDataTestCorpus(tfds.core.GeneratorBasedBuilder):
    """A small text data set built by the test (no download)."""

    VERSION = tfds.core.Version("1.0.0")
    # Where tfds looks for metadata files of the builder's package (this test has none).
    pkg_dir_path = epath.Path(str(tmp_path / "pkg"))

    def _info(self):
      return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
          {"title": tfds.features.Text(), "text": tfds.features.Text()}
        )
      )

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      for i, doc in enumerate(docs):
        # Wikipedia-like: paragraphs on lines, sentences within a paragraph.
        yield i, {"title": f"doc {i}", "text": " ".join(doc[:3]) + "\n" + " ".join(doc[3:])}

  results = {}
  for fmt in ("tfrecord", "array_record"):
    data_dir = str(tmp_path / fmt)
    PretrainDataTestCorpus(data_dir=data_dir, file_format=fmt).download_and_prepare()
    src = corpus.TfdsSource("pretrain_data_test_corpus", "train", data_dir)
    assert src.random_access == (fmt == "array_record")
    got = [d for d, _ in src.documents(0, None, 0, 1)]
    assert sorted(got) == sorted(docs)  # sentences split back exactly (tfds orders by key hash)
    shares = [[tuple(d) for d, _ in src.documents(0, None, p, 2)] for p in range(2)]
    assert not set(shares[0]) & set(shares[1]) and len(shares[0]) + len(shares[1]) == len(docs)
    kw = dict(files=None, tfds_name="pretrain_data_test_corpus", tfds_data_dir=data_dir)
    full = _batches(setup, 6, **kw)
    it = data.make_pretraining_batches(
      None,
      setup["tok"],
      32,
      S,
      P,
      0,
      process_index=0,
      process_count=1,
      shuffle_buffer=16,
      **{k: v for k, v in kw.items() if k != "files"},
    )
    for _ in range(5):
      next(it)
    state = it.get_state()
    assert state["window"] > 0 and "record" in state["position"]
    it.set_state(state)
    np.testing.assert_array_equal(next(it)["input_ids"], full[5]["input_ids"])
    it.close()
    results[fmt] = full
  np.testing.assert_array_equal(
    results["tfrecord"][5]["input_ids"], results["array_record"][5]["input_ids"]
  )
  with pytest.raises(ValueError, match="no field 'body'"):
    corpus.TfdsSource(
      "pretrain_data_test_corpus", "train", str(tmp_path / "tfrecord"), field="body"
    )
