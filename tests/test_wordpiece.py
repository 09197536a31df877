"""WordPieceTokenizer (Chinese ALBERT's BERT vocabulary) and load_tokenizer: parity with
transformers' BertTokenizer (pieces, ids, model inputs, decoding) and BertTokenizerFast (offsets,
overflow windows) on a vocabulary trained here on mixed Chinese/English text the test writes."""

import json
import os
import pickle
import random
import unicodedata

import numpy as np
import pytest

import albert_flax as af
from albert_flax.tokenization import AlbertTokenizer, train_tokenizer
from albert_flax.tokenization.training import train_wordpiece_vocab
from albert_flax.tokenization.wordpiece import WordPieceTokenizer

WORDS = (
  "北京 大学 的 学生 在 中国 上海 天气 很好 我们 喜欢 机器 学习 模型 。 ， 、 ！ 《 书 》 "
  "The quick Brown fox jumps over LAZY dogs . Café naïve résumé Zürich Ångström straße "
  "1,000 3.14 2026年 GPU 的TPU don't it's (paren) - dash ü ñ é ﬁne Ｆｕｌｌ，width "
  "日本語 한국어 ΟΔΟΣ Σοφία İstanbul hello!? e\u0301 tab\tx a\u200bb c\x00d e\ufffdf"
).split(" ")
# Characters on which BERT's basic tokenization has rules: CJK, punctuation, accents, controls,
# whitespace, special tokens written in the text.
ALPHABET = list("aBcΣσςİé,.!?中文日本大学。，\x00\x7f\u200b\ufffd \t\n\u3000ﬁＦ1'`ß\u0301") + [
  "[MASK]",
  "[CLS]",
  " [SEP] ",
  "[cls]",
  "[PAD]",
  "[UNK]",
  "hello",
  "学习",
  "##ab",
  "x" * 120,  # longer than max_input_chars_per_word: [UNK]
  # What NFC composes, other whitespace and separators, characters beyond the BMP.
  "<\u0338",
  "\u1100\u1161",
  "\u212b",
  "\u0340",
  "\u2028",
  "\x85",
  "\x1c",
  "\u00a0",
  "\U00020000",
  "\U0001f600",
  "《》、",
]


def _line(rng: random.Random) -> str:
  return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 16)))


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
  d = tmp_path_factory.mktemp("wordpiece")
  rng = random.Random(0)
  corpus = d / "corpus.txt"
  corpus.write_text("\n".join(_line(rng) for _ in range(3000)) + "\n", encoding="utf-8")
  return train_wordpiece_vocab(str(corpus), 400, str(d / "vocab.txt"), min_frequency=1)


@pytest.fixture(scope="module")
def tok(vocab_file):
  return WordPieceTokenizer(vocab_file)


@pytest.fixture(scope="module")
def bert(vocab_file):
  import transformers

  transformers.logging.set_verbosity_error()
  return transformers.BertTokenizer(vocab_file)


@pytest.fixture(scope="module")
def bert_fast(vocab_file):
  import transformers

  return transformers.BertTokenizerFast(vocab_file)


def _strings(n: int, seed: int = 1) -> list[str]:
  rng = random.Random(seed)
  out = [_line(rng) for _ in range(n // 2)]
  out += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 14))) for _ in range(n // 2)]
  return out


def test_trained_vocabulary(vocab_file, tok):
  tokens = open(vocab_file, encoding="utf-8").read().split("\n")[:-1]
  assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert len(tokens) == tok.vocab_size == len(tok) and len(set(tokens)) == len(tokens)
  assert {"北", "京", "学"} <= set(tokens)  # every CJK character its own token
  assert any(t.startswith("##") for t in tokens)
  ids = (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id)
  assert ids == (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def cased_vocab_file(vocab_file):
  """A vocabulary with capitals and accents (trained without lower-casing)."""
  corpus = os.path.join(os.path.dirname(vocab_file), "corpus.txt")
  out = os.path.join(os.path.dirname(vocab_file), "cased", "vocab.txt")
  return train_wordpiece_vocab(corpus, 400, out, do_lower_case=False, min_frequency=1)


@pytest.mark.parametrize(
  "cased, kwargs",
  [
    (False, {}),
    (False, {"strip_accents": True}),
    (True, {"do_lower_case": False}),
    (True, {"do_lower_case": False, "strip_accents": True}),
    (True, {"strip_accents": False}),
  ],
)
def test_tokenize_parity(vocab_file, cased_vocab_file, cased, kwargs):
  import transformers

  path = cased_vocab_file if cased else vocab_file
  if cased:  # the vocabulary has what lower-casing or stripping would otherwise hide
    assert {"é", "B", "Σ"} <= set(open(path, encoding="utf-8").read().split("\n"))
  ref = transformers.BertTokenizer(path, **kwargs)
  ours = WordPieceTokenizer(path, **kwargs)
  texts = _strings(1000)
  batch = ours.encode_as_ids(texts)
  for text, ids in zip(texts, batch):
    assert ours.tokenize(text) == ref.tokenize(text), repr(text)
    assert ids == ref.encode(text, add_special_tokens=False), repr(text)
    assert ours.convert_tokens_to_ids(ours.tokenize(text)) == ids
  assert ours.encode_as_ids("北京大学") == ref.encode("北京大学", add_special_tokens=False)
  assert ours.tokenize("北京大学") == ["北", "京", "大", "学"]


def test_call_parity(tok, bert):
  texts, pairs = _strings(40, seed=2), _strings(40, seed=3)
  for kwargs in [
    {},
    {"max_length": 12, "truncation": True},
    {"max_length": 16, "truncation": True, "padding": "max_length"},
    {"padding": True},
    {"max_length": 10, "truncation": "only_first"},
    {"add_special_tokens": False},
  ]:
    for args in [(texts,), (texts, pairs), (texts[0],), (texts[1], pairs[1])]:
      if kwargs.get("truncation") == "only_first" and len(args) == 2:  # may not fit: skipped
        continue
      ours, ref = tok(*args, **kwargs), bert(*args, **kwargs)
      for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert ours[key] == ref[key], (key, kwargs, args)
  arr = tok(texts, pairs, max_length=20, truncation=True, padding="max_length", return_tensors="np")
  ref = bert(texts, pairs, max_length=20, truncation=True, padding="max_length")
  assert arr["input_ids"].shape == (len(texts), 20)
  np.testing.assert_array_equal(arr["input_ids"], ref["input_ids"])
  np.testing.assert_array_equal(arr["token_type_ids"], ref["token_type_ids"])
  ids = tok.encode_as_ids(texts[0])
  assert tok.get_special_tokens_mask(ids, ids) == bert.get_special_tokens_mask(ids, ids)


def test_decode_parity(tok, bert):
  texts = _strings(200, seed=4)
  enc = tok(texts, max_length=24, truncation=True, padding=True, return_tensors="np")
  for skip in (False, True):
    ref = bert.batch_decode(enc["input_ids"].tolist(), skip_special_tokens=skip)
    assert tok.batch_decode(enc["input_ids"], skip_special_tokens=skip) == ref
    assert tok.decode(enc["input_ids"][3], skip_special_tokens=skip) == ref[3]
  assert tok.convert_ids_to_tokens(enc["input_ids"][0]) == bert.convert_ids_to_tokens(
    enc["input_ids"][0].tolist()
  )


def test_offsets_equal_bert_fast(tok, bert_fast):
  texts = _strings(300, seed=5) + ["Café 1,000,000 北京大学 naïve e\u0301t\u00e9 ﬁne 2026年"]
  for text in texts:
    ours = tok(text, return_offsets_mapping=True)
    assert ours["input_ids"] == tok(text)["input_ids"], repr(text)  # the slow tokenizer's ids
    if unicodedata.normalize("NFC", text) != text:
      continue  # BertTokenizer applies NFC, BertTokenizerFast does not (nor its ids agree)
    ref = bert_fast(text, return_offsets_mapping=True)
    assert ours["input_ids"] == ref["input_ids"], repr(text)
    assert ours["offset_mapping"] == ref["offset_mapping"], repr(text)
  text = "北京大学 Café, 1,000!"
  spans = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
  assert tok.tokenize(text)[:5] == ["北", "京", "大", "学", "cafe"]
  assert [text[a:b] for a, b in spans][:5] == ["北", "京", "大", "学", "Café"]  # raw characters
  pair = tok(texts[:8], texts[8:16], return_offsets_mapping=True, padding=True, return_tensors="np")
  ref = bert_fast(texts[:8], texts[8:16], return_offsets_mapping=True, padding=True)
  np.testing.assert_array_equal(pair["offset_mapping"], np.array(ref["offset_mapping"]))


def test_overflow_windows_equal_bert_fast(tok, bert_fast):
  rng = random.Random(6)
  contexts = [" ".join(_line(rng) for _ in range(rng.randint(1, 6))) for _ in range(8)]
  questions = [_line(rng)[:20] for _ in range(8)]
  cases = [
    ((contexts,), dict(max_length=16, stride=4, truncation=True)),
    ((contexts[0],), dict(max_length=10, stride=0, truncation=True)),
    ((questions, contexts), dict(max_length=32, stride=8, truncation="only_second")),
    ((contexts, questions), dict(max_length=32, stride=3, truncation="only_first", padding=True)),
  ]
  for args, kwargs in cases:
    ours = tok(*args, return_overflowing_tokens=True, return_offsets_mapping=True, **kwargs)
    ref = bert_fast(*args, return_overflowing_tokens=True, return_offsets_mapping=True, **kwargs)
    assert len(set(ref["overflow_to_sample_mapping"])) < len(ref["input_ids"])  # some overflow
    assert set(ours) == set(ref)
    for key in ref:
      assert (
        ours[key] == [list(map(tuple, r)) for r in ref[key]]
        if key == "offset_mapping"
        else (ours[key] == ref[key])
      ), (key, kwargs)
  with pytest.raises(ValueError, match="stride=8 must be smaller"):
    tok(contexts, max_length=10, stride=8, truncation=True, return_overflowing_tokens=True)
  with pytest.raises(ValueError, match="only_first' or 'only_second"):
    tok(questions, contexts, max_length=32, truncation=True, return_overflowing_tokens=True)


def test_word_start_mask_pickle_and_save(tok, bert, vocab_file, tmp_path):
  tokens = open(vocab_file, encoding="utf-8").read().split("\n")[:-1]
  assert tok.word_start_mask.dtype == bool and tok.word_start_mask.shape == (len(tokens),)
  assert all(tok.word_start_mask[i] == (not t.startswith("##")) for i, t in enumerate(tokens))
  # One word start per word of BERT's basic tokenization (on text without special tokens).
  for text in [t for t in _strings(200, seed=7) if "[" not in t]:
    ids = tok.encode_as_ids(text)
    words = bert.basic_tokenizer.tokenize(text)
    assert tok.word_start_mask[ids].sum() == len(words), repr(text)
  clone = pickle.loads(pickle.dumps(tok))
  assert clone.encode_as_ids(_strings(20)) == tok.encode_as_ids(_strings(20))
  (path,) = tok.save_vocabulary(tmp_path)
  assert path == str(tmp_path / "vocab.txt")
  assert open(path, encoding="utf-8").read() == open(vocab_file, encoding="utf-8").read()
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    WordPieceTokenizer(tmp_path / "nope.txt")
  (tmp_path / "small.txt").write_text("[PAD]\n[UNK]\na\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"lacks the special tokens \['\[CLS\]', '\[SEP\]'"):
    WordPieceTokenizer(tmp_path / "small.txt")


# --------------------------------------------------------------------- load_tokenizer


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
  d = tmp_path_factory.mktemp("spm")
  rng = random.Random(0)
  (d / "c.txt").write_text("\n".join(_line(rng) for _ in range(500)), encoding="utf-8")
  return train_tokenizer(str(d / "c.txt"), 200, str(d / "sp"), hard_vocab_limit=False)


def _same(a, b, text="Café 北京大学 the fox, 1,000 don't") -> bool:
  return type(a) is type(b) and a.encode_as_ids(text) == b.encode_as_ids(text)


def test_load_tokenizer_layouts(tmp_path, vocab_file, spm_file, tok):
  sp = AlbertTokenizer(spm_file)
  assert _same(af.load_tokenizer(spm_file), sp)  # files
  assert _same(af.load_tokenizer(vocab_file), tok)

  def layout(name, files, config=None):
    d = tmp_path / name
    d.mkdir()
    for target, source in files.items():
      (d / target).write_bytes(open(source, "rb").read())
    if config is not None:
      (d / "tokenizer_config.json").write_text(json.dumps(config))
    return d

  # transformers' directories: AlbertTokenizer + spiece.model, albert_chinese_*'s BertTokenizer.
  d = layout("hf_albert", {"spiece.model": spm_file}, {"tokenizer_class": "AlbertTokenizer"})
  assert _same(af.load_tokenizer(d), sp)
  d = layout("hf_zh", {"vocab.txt": vocab_file}, {"tokenizer_class": "BertTokenizer"})
  assert _same(af.load_tokenizer(d), tok)
  cased = af.load_tokenizer(
    layout(
      "cased",
      {"vocab.txt": vocab_file},
      {"tokenizer_class": "BertTokenizer", "do_lower_case": False},
    )
  )
  assert cased.do_lower_case is False and not _same(cased, tok, "Brown LAZY Café")
  # Google's Chinese TF release (vocab_chinese.txt) read through the checkpoint prefix;
  # brightmart's albert_zh (vocab.txt); Google's English release (30k-clean.model).
  d = layout("zh_tf", {"vocab_chinese.txt": vocab_file, "albert_config.json": vocab_file})
  (d / "model.ckpt-0.index").write_bytes(b"")
  assert _same(af.load_tokenizer(d / "model.ckpt-0"), tok)
  assert _same(af.load_tokenizer(d), tok)
  assert _same(af.load_tokenizer(layout("brightmart", {"vocab.txt": vocab_file})), tok)
  assert _same(af.load_tokenizer(layout("en_tf", {"30k-clean.model": spm_file})), sp)
  # A pretraining workdir keeps spiece.model (or vocab.txt) at its root.
  assert _same(af.load_tokenizer(layout("workdir", {"spiece.model": spm_file})), sp)
  with pytest.raises(FileNotFoundError, match="No tokenizer in"):
    af.load_tokenizer(layout("empty", {}))
  with pytest.raises(FileNotFoundError, match="names BertTokenizer"):
    af.load_tokenizer(
      layout("wrong", {"spiece.model": spm_file}, {"tokenizer_class": "BertTokenizer"})
    )
  with pytest.raises(ValueError, match="GPT2Tokenizer"):
    af.load_tokenizer(
      layout("gpt", {"vocab.txt": vocab_file}, {"tokenizer_class": "GPT2Tokenizer"})
    )


def test_load_tokenizer_hub_id_offline(monkeypatch, tmp_path):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setenv("HF_HOME", str(tmp_path))
  with pytest.raises(OSError, match="not in the local Hugging Face cache"):
    af.load_tokenizer("nobody/albert-nothing-zh")


def test_save_pretrained_writes_the_vocabulary_it_was_given(tmp_path, tok, vocab_file):
  """A Chinese model saved with its WordPiece tokenizer reloads with it, here and in
  transformers (BertTokenizer from tokenizer_config.json)."""
  import jax
  import transformers

  cfg = af.AlbertConfig(
    vocab_size=tok.vocab_size,
    embedding_size=8,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=32,
  )
  model = af.AlbertForMaskedLM(cfg)
  params = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 4), np.int32))["params"]
  for fmt in ("hf", "tf"):  # (every format writes the tokenizer with the same call)
    path = af.save_pretrained(tmp_path / fmt, model, params, format=fmt, tokenizer=tok)
    assert (
      open(os.path.join(path, "vocab.txt"), encoding="utf-8").read()
      == open(vocab_file, encoding="utf-8").read()
    )
    assert not os.path.exists(os.path.join(path, "spiece.model"))
    assert _same(af.load_tokenizer(path), tok)
  ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  text = "北京大学 Café, the fox"
  assert ref.encode(text) == tok(text)["input_ids"]
  # A vocab.txt path is copied as vocab.txt.
  af.save_pretrained(tmp_path / "path", model, params, format="tf", tokenizer=vocab_file)
  assert _same(af.load_tokenizer(tmp_path / "path"), tok)


# --------------------------------------------------------------------- pretraining's tokenizer


def test_pretraining_tokenizer_choice(tmp_path, vocab_file):
  """tokenizer.vocab_file copies a WordPiece vocabulary into the workdir; kind=wordpiece without
  one trains it on the training documents; the default stays SentencePiece."""
  from pretrain import train as pretrain_train
  from pretrain.configs import tiny

  rng = random.Random(8)
  corpus = tmp_path / "corpus.txt"
  docs = ["\n".join(_line(rng) + "。" for _ in range(rng.randint(3, 8))) for _ in range(150)]
  corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")

  for name in "abcd":  # the program makes the workdir before it prepares the tokenizer
    (tmp_path / name).mkdir()

  def config(**tokenizer):
    c = tiny.get_config()
    c.data.train_files = str(corpus)
    c.tokenizer.vocab_size = 300
    c.tokenizer.update(tokenizer)
    return c

  given = pretrain_train.prepare_tokenizer(config(vocab_file=vocab_file), str(tmp_path / "a"))
  assert isinstance(given, WordPieceTokenizer)
  assert open(tmp_path / "a" / "vocab.txt").read() == open(vocab_file).read()
  trained = pretrain_train.prepare_tokenizer(config(kind="wordpiece"), str(tmp_path / "b"))
  assert isinstance(trained, WordPieceTokenizer) and os.path.isfile(tmp_path / "b" / "vocab.txt")
  assert 100 < trained.vocab_size <= 300 and trained.tokenize("北京大学") == [
    "北",
    "京",
    "大",
    "学",
  ]
  assert trained.convert_ids_to_tokens([0, 1, 2, 3, 4]) == [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
  ]
  assert isinstance(
    pretrain_train.prepare_tokenizer(config(), str(tmp_path / "c")), AlbertTokenizer
  )
  with pytest.raises(ValueError, match="tokenizer.kind must be"):
    pretrain_train.prepare_tokenizer(config(kind="bpe"), str(tmp_path / "d"))
  with pytest.raises(ValueError, match="WordPiece vocabulary"):
    pretrain_train.prepare_tokenizer(
      config(kind="sentencepiece", vocab_file=vocab_file), str(tmp_path / "d")
    )
