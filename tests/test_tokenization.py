"""AlbertTokenizer and train_tokenizer: parity with transformers' slow AlbertTokenizer on a model
trained here on text the test writes."""

import os
import pickle
import random
import unicodedata

import numpy as np
import pytest
import sentencepiece as spm

from albert_flax.tokenization import AlbertTokenizer, normalize_text, train_tokenizer

WORDS = (
  "The quick Brown fox jumps over the LAZY dog . Café naïve résumé Zürich façade Ångström straße "
  "ΟΔΟΣ Σοφία İstanbul 1,000,000 and 9, 12,5 in 1999, the 2,3,4 numbers 7,000 ``quoted'' text "
  "``hi'' ünïcödé ﬁne Ｆｕｌｌ，width (paren) - dash 3.14 100 x9, a1, $5,00 don't it's"
).split()


def _corpus_line(rng: random.Random) -> str:
  spaces = ["  ", " ", "\t", "   ", " \u00a0"]
  return "".join(rng.choice(WORDS) + rng.choice(spaces) for _ in range(rng.randint(4, 14)))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
  d = tmp_path_factory.mktemp("spm")
  rng = random.Random(0)
  for k in range(2):  # two files, found through a glob
    with open(d / f"corpus{k}.txt", "w", encoding="utf-8") as f:
      for _ in range(1500):
        f.write(_corpus_line(rng) + "\n")
      f.write("\n   \n")  # blank lines are skipped
  return train_tokenizer(
    str(d / "corpus*.txt"),
    400,
    str(d / "out" / "spiece"),
    seed=0,
    hard_vocab_limit=False,
    num_threads=2,
    input_sentence_size=2000,
  )


@pytest.fixture(scope="module")
def hf_cls():
  import transformers  # a test dependency: the reference implementation

  transformers.logging.set_verbosity_error()
  return transformers.AlbertTokenizer


def _test_strings(n: int = 300) -> list[str]:
  rng = random.Random(1)
  extra = [
    "[MASK]",
    " [MASK] ",
    "[CLS]",
    "[SEP]",
    "<pad>",
    "<unk>",
    "<PAD>",
    "<UN\u212a>",
    "[cls]",
    "[SE[SEP]",
    "9,9",
    "1,000,",
    "日本語",
    "🙂",
    "e\u0301",
    "\n",
    "\u3000",
    "ΑΣ ",
    "``",
    "''",
    "'",
    "x1,",
    ",,",
    "0,",
    "Ϲ",
    "İ",
    "ǅ",
    "   ",
  ]
  fixed = [
    "",
    " ",
    "hello [MASK] world",
    "x  [CLS] [MASK]y<pad>z <PAD> <unk> [cls]",
    "[CLS][MASK]",
    "9,9 1,000,000 and 9,",
    "ΟΔΟΣ ΑΣ.",
    "日本語 fox, 🙂",
    "Café ``x'' 12,",
    "  lots   of\tspace  ",
    "a1,b 22,c,3,",
    "ﬁne ｆｕｌｌ，ｗｉｄｔｈ，",
  ]
  out = list(fixed)
  while len(out) < n:
    parts = [
      rng.choice(WORDS) if rng.random() < 0.7 else rng.choice(extra)
      for _ in range(rng.randint(1, 12))
    ]
    out.append(rng.choice(["", " ", "  "]).join(parts) if rng.random() < 0.5 else " ".join(parts))
  return out


def test_special_ids_and_vocab(model_file):
  tok = AlbertTokenizer(model_file)
  ids = (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id)
  assert ids == (0, 1, 2, 3, 4)
  assert [tok.sp_model.IdToPiece(i) for i in range(5)] == [
    "<pad>",
    "<unk>",
    "[CLS]",
    "[SEP]",
    "[MASK]",
  ]
  assert isinstance(tok.sp_model, spm.SentencePieceProcessor)
  assert len(tok) == tok.vocab_size == tok.sp_model.GetPieceSize() > 100
  assert tok.sp_model.bos_id() == -1 and tok.sp_model.eos_id() == -1
  assert all(tok.sp_model.IsControl(i) for i in (2, 3, 4))


@pytest.mark.parametrize(
  "kwargs", [{}, {"keep_accents": True}, {"do_lower_case": False}, {"remove_space": False}]
)
def test_tokenize_parity(model_file, hf_cls, kwargs):
  ours, hf = AlbertTokenizer(model_file, **kwargs), hf_cls(model_file, **kwargs)
  texts = _test_strings()
  for t in texts:
    pieces = hf.tokenize(t)
    assert ours.tokenize(t) == pieces, repr(t)
    assert ours.convert_tokens_to_ids(pieces) == hf.convert_tokens_to_ids(pieces)
    assert ours.encode_as_ids(t) == hf.convert_tokens_to_ids(pieces), repr(t)
  # The batch path (one threaded sentencepiece call) gives the same rows.
  assert ours.encode_as_ids(texts) == [hf.encode(t, add_special_tokens=False) for t in texts]
  assert ours.encode_as_ids(tuple(texts[:3])) == ours.encode_as_ids(texts[:3])


def test_digit_comma_split(model_file, hf_cls):
  tok = AlbertTokenizer(model_file)
  glued = [p for p in tok.get_vocab() if len(p) > 1 and p[-1] == "," and p[-2].isdigit()]
  assert glued, "the corpus should give pieces like '▁9,' so that the split is exercised"
  for text in ["9,", "and 9, then", "x9,", "1999, 12,5"]:
    pieces = tok.tokenize(text)
    assert not any(len(p) > 1 and p[-1] == "," and p[-2].isdigit() for p in pieces)
    assert pieces == hf_cls(model_file).tokenize(text)
  assert tok.tokenize("9,")[-1] == ","


def test_normalization(model_file):
  assert normalize_text("  Café  ``Ünï''\tΣΟΣ ") == 'cafe "uni" σοσ'
  assert normalize_text("Café", keep_accents=True) == "café"
  assert normalize_text("A  B", do_lower_case=False, remove_space=False) == "A  B"
  tok = AlbertTokenizer(model_file)
  assert tok.tokenize("CAFÉ") == tok.tokenize("cafe")


def test_call_parity(model_file, hf_cls):
  ours, hf = AlbertTokenizer(model_file), hf_cls(model_file)
  texts = _test_strings(40)
  a, b = texts[:20], texts[20:]
  cases = [
    dict(),
    dict(padding=True),
    dict(padding="longest", max_length=9, truncation=True),
    dict(padding="max_length", max_length=16, truncation=True),
    dict(max_length=7, truncation=True),
    dict(max_length=3, truncation=True),
    dict(padding="max_length", max_length=64),
  ]
  for kw in cases:
    for pair in (None, b):
      assert dict(ours(a, pair, **kw)) == dict(hf(a, pair, **kw)), (kw, pair is None)
    for i in range(0, 20, 5):  # single text (and pair): flat lists
      assert dict(ours(a[i], b[i], **kw)) == dict(hf(a[i], b[i], **kw)), kw
      assert dict(ours(a[i], **kw)) == dict(hf(a[i], **kw)), kw
  assert dict(ours(a, b, add_special_tokens=False)) == dict(hf(a, b, add_special_tokens=False))
  enc = ours(a, b, padding="max_length", max_length=20, truncation=True, return_tensors="np")
  ref = hf(a, b, padding="max_length", max_length=20, truncation=True, return_tensors="np")
  for k in ("input_ids", "token_type_ids", "attention_mask"):
    assert enc[k].dtype == np.int32 and enc[k].shape == (20, 20)
    np.testing.assert_array_equal(enc[k], ref[k])
  assert enc.input_ids is enc["input_ids"]
  one = ours(a[0], return_tensors="np")
  assert one["input_ids"].shape == (1, len(ours(a[0])["input_ids"]))


def test_special_tokens_helpers(model_file, hf_cls):
  ours, hf = AlbertTokenizer(model_file), hf_cls(model_file)
  x, y = ours.encode_as_ids("the quick fox"), ours.encode_as_ids("over 9, dogs")
  for args in [(x,), (x, y)]:
    for name in (
      "build_inputs_with_special_tokens",
      "get_special_tokens_mask",
      "create_token_type_ids_from_sequences",
    ):
      assert getattr(ours, name)(*args) == getattr(hf, name)(*args), name
  full = ours.build_inputs_with_special_tokens(x, y) + [1, 0]
  assert ours.get_special_tokens_mask(
    full, already_has_special_tokens=True
  ) == hf.get_special_tokens_mask(full, already_has_special_tokens=True)
  assert ours.build_inputs_with_special_tokens(x, y) == [2, *x, 3, *y, 3]


def test_decode_parity(model_file, hf_cls):
  ours, hf = AlbertTokenizer(model_file), hf_cls(model_file)
  for t in _test_strings(80):
    ids = hf.encode(t)
    assert ours.decode(ids) == hf.decode(ids), repr(t)
    assert ours.decode(np.array(ids)) == hf.decode(ids)
    skipped = hf.decode(ids, skip_special_tokens=True)
    assert ours.decode(ids, skip_special_tokens=True) == skipped, repr(t)
    assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
  assert ours.decode(ours.encode_as_ids("the quick brown fox")) == "the quick brown fox"
  with pytest.raises(ValueError, match="outside the vocabulary"):
    ours.decode([5, ours.vocab_size])
  with pytest.raises(ValueError, match="one sequence"):
    ours.decode(np.zeros((2, 3), np.int32))


def test_word_start_mask(model_file):
  # The original's _is_start_piece: "▁"/"<" prefixes and single punctuation pieces start words.
  PUNCT = set('!"#$%&()*+,-./:;?@[\\]^_`{|}~')
  tok = AlbertTokenizer(model_file)
  m = tok.word_start_mask
  assert m.dtype == np.bool_ and m.shape == (tok.vocab_size,)
  sp = tok.sp_model
  for i in range(tok.vocab_size):
    piece = sp.IdToPiece(i)
    original_start = piece.startswith(("▁", "<")) or (len(piece) == 1 and piece in PUNCT)
    assert m[i] == (original_start or sp.IsControl(i) or sp.IsUnknown(i) or i < 5), piece
  assert m[[0, 1, 2, 3, 4]].all()
  assert not m.all() and m.any()
  text = "the quick brown fox jumps over lazy dogs naïvely"
  ids = tok.encode_as_ids(text)
  assert m[ids].sum() == len(text.split())  # one start per word


def test_pickle_without_the_file(model_file, tmp_path):
  # The pickle carries the model proto: it must load where the original file does not exist.
  local = tmp_path / "spiece.model"
  local.write_bytes(open(model_file, "rb").read())
  tok = AlbertTokenizer(str(local), keep_accents=True)
  blob = pickle.dumps(tok)
  local.unlink()
  back = pickle.loads(blob)
  texts = _test_strings(30)
  assert back.encode_as_ids(texts) == tok.encode_as_ids(texts) and back.keep_accents
  out = tmp_path / "saved"
  out.mkdir()
  (path,) = back.save_vocabulary(str(out))
  assert os.path.basename(path) == "spiece.model"
  assert AlbertTokenizer(path, keep_accents=True).encode_as_ids(texts) == tok.encode_as_ids(texts)


def test_save_vocabulary_copies(model_file, tmp_path):
  tok = AlbertTokenizer(model_file)
  (path,) = tok.save_vocabulary(str(tmp_path), filename_prefix="x")
  assert path == str(tmp_path / "x-spiece.model")
  assert open(path, "rb").read() == open(model_file, "rb").read()
  with pytest.raises(NotADirectoryError):
    tok.save_vocabulary(str(tmp_path / "missing"))


def test_errors(model_file, tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.model"):
    AlbertTokenizer(str(tmp_path / "nope.model"))
  (tmp_path / "junk.model").write_bytes(b"not a model")
  with pytest.raises(ValueError, match="not a valid SentencePiece model"):
    AlbertTokenizer(str(tmp_path / "junk.model"))
  # A model without ALBERT's special pieces.
  (tmp_path / "t.txt").write_text("\n".join(_corpus_line(random.Random(i)) for i in range(300)))
  spm.SentencePieceTrainer.train(
    input=str(tmp_path / "t.txt"),
    model_prefix=str(tmp_path / "plain"),
    vocab_size=120,
    hard_vocab_limit=False,
    minloglevel=2,
  )
  with pytest.raises(ValueError, match=r"lacks the special pieces \['<pad>', '\[CLS\]'"):
    AlbertTokenizer(str(tmp_path / "plain.model"))

  tok = AlbertTokenizer(model_file)
  long_text = "the quick brown fox " * 10
  with pytest.raises(ValueError, match="padding"):
    tok("a b", padding="max")
  with pytest.raises(ValueError, match="truncation"):
    tok("a b", truncation="only_second", max_length=8)
  with pytest.raises(ValueError, match="need max_length"):
    tok("a b", truncation=True)
  with pytest.raises(ValueError, match="need max_length"):
    tok("a b", padding="max_length")
  with pytest.raises(ValueError, match="more than max_length=8"):  # never cut silently
    tok([long_text, "a"], max_length=8, padding="max_length", return_tensors="np")
  with pytest.raises(ValueError, match="different lengths"):
    tok([long_text, "a"], return_tensors="np")
  with pytest.raises(ValueError, match="return_tensors"):
    tok("a", return_tensors="pt")
  with pytest.raises(ValueError, match="no room"):
    tok("a", "b", max_length=2, truncation=True)
  with pytest.raises(ValueError, match="as long as text"):
    tok(["a", "b"], ["c"])
  with pytest.raises(TypeError):
    tok(["a", 3])
  with pytest.raises(TypeError, match="element 1"):
    tok.encode_as_ids(["a", None])
  # Without truncation, lists keep the whole sequence (as transformers does).
  assert len(tok(long_text, max_length=8, padding="max_length")["input_ids"]) > 8


def test_train_errors_and_determinism(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.txt"):
    train_tokenizer(str(tmp_path / "missing.txt"), 100, str(tmp_path / "m"))
  with pytest.raises(FileNotFoundError, match="no file matches"):
    train_tokenizer(str(tmp_path / "*.none"), 100, str(tmp_path / "m"))
  (tmp_path / "empty.txt").write_text("\n  \n")
  with pytest.raises(ValueError, match="holds no text"):
    train_tokenizer([str(tmp_path / "empty.txt")], 100, str(tmp_path / "m"))
  with pytest.raises(ValueError, match="vocab_size"):
    train_tokenizer(str(tmp_path / "empty.txt"), 4, str(tmp_path / "m"))

  # Sampling 300 of 1200 lines: the same seed gives the same model, another seed another sample.
  rng = random.Random(3)
  lines = [
    " ".join(rng.choice(["alpha", "beta", "gamma", f"w{i % 97}", f"v{i}"]) for _ in range(8))
    for i in range(1200)
  ]
  (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")

  def train(seed, name):
    path = train_tokenizer(
      str(tmp_path / "c.txt"),
      120,
      str(tmp_path / name),
      seed=seed,
      input_sentence_size=300,
      num_threads=2,
      hard_vocab_limit=False,
    )
    sp = spm.SentencePieceProcessor(model_file=path)
    return [(sp.IdToPiece(i), sp.GetScore(i)) for i in range(len(sp))]

  first = train(7, "a")
  assert first == train(7, "b")
  assert first != train(8, "c")
  assert [p for p, _ in first[:5]] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
  assert all(p == p.lower() for p, _ in first[5:])


def test_user_defined_symbols(tmp_path, hf_cls):
  (tmp_path / "t.txt").write_text("\n".join(_corpus_line(random.Random(i)) for i in range(400)))
  path = train_tokenizer(
    str(tmp_path / "t.txt"),
    150,
    str(tmp_path / "u"),
    hard_vocab_limit=False,
    user_defined_symbols=["(", ")", "-"],
  )
  tok = AlbertTokenizer(path)
  assert [tok.sp_model.IdToPiece(i) for i in range(5, 8)] == ["(", ")", "-"]
  text = "a (paren) - dash-x"
  assert tok.tokenize(text) == hf_cls(path).tokenize(text)
  assert "(" in tok.tokenize(text)


def test_parity_when_sentencepiece_keeps_spaces(tmp_path, hf_cls):
  # A model whose own normalizer keeps extra whitespace makes the whitespace handling around
  # literal special tokens ([MASK] eats the space on its left) and remove_space visible.
  lines = [normalize_text(_corpus_line(random.Random(i))) for i in range(400)]
  (tmp_path / "t.txt").write_text("\n".join(lines))
  spm.SentencePieceTrainer.train(
    input=str(tmp_path / "t.txt"),
    model_prefix=str(tmp_path / "ws"),
    vocab_size=150,
    pad_id=0,
    unk_id=1,
    bos_id=-1,
    eos_id=-1,
    control_symbols=["[CLS]", "[SEP]", "[MASK]"],
    remove_extra_whitespaces=False,
    hard_vocab_limit=False,
    minloglevel=2,
  )
  path = str(tmp_path / "ws.model")
  texts = _test_strings(150)
  for kwargs in ({}, {"remove_space": False}):
    ours, hf = AlbertTokenizer(path, **kwargs), hf_cls(path, **kwargs)
    for t in texts:
      assert ours.tokenize(t) == hf.tokenize(t), repr(t)
    assert ours.encode_as_ids(texts) == [hf.encode(t, add_special_tokens=False) for t in texts]
    # remove_space=False: spaces before [MASK] are eaten, those after it are kept
    assert ours.tokenize("a  [MASK]  b")[:2] == [*ours.tokenize("a"), "[MASK]"]


def test_unknown_comma_and_digits(tmp_path, hf_cls):
  # With "," outside the vocabulary an unknown piece can end in "digit," (e.g. "٣," in Arabic-Indic
  # digits): the fast path must then redo the row from strings to split it as transformers does.
  lines = [normalize_text(_corpus_line(random.Random(i))).replace(",", " ") for i in range(300)]
  (tmp_path / "t.txt").write_text("\n".join(lines))
  path = train_tokenizer(str(tmp_path / "t.txt"), 150, str(tmp_path / "nc"), hard_vocab_limit=False)
  tok, hf = AlbertTokenizer(path), hf_cls(path)
  assert tok.sp_model.IsUnknown(tok.sp_model.PieceToId(","))
  texts = ["x ٣, y", "٣٣,", "the 9, fox", "a,b ٢,٣", "日本, 1,000"] + _test_strings(60)
  assert tok.encode_as_ids(texts) == [hf.encode(t, add_special_tokens=False) for t in texts]
  assert [tok.tokenize(t) for t in texts] == [hf.tokenize(t) for t in texts]


# --------------------------------------------------------------------- offsets


@pytest.fixture(scope="module")
def tok(model_file):
  return AlbertTokenizer(model_file)


def _offsets(tok, text):
  """Ids (no special tokens) and raw character spans [T, 2] from the tokenizer's own offsets."""
  enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
  return enc["input_ids"], np.asarray(enc["offset_mapping"], np.int64).reshape(-1, 2)


@pytest.mark.parametrize(
  "text",
  [
    "  Hello  Wörld, 1,000 ﬁsh ``quoted'' 한국어 x",
    "In 1990, the cafe\u0301 was naïve. ΣΑΣ İstanbul",
    "a\t\tb\u00a0c  ",
    "",
    "   ",
    "Über 9, 10,5 straße ½ end",
  ],
)
def test_offsets_match_tokenizer_and_cover_text(tok, text):
  ids, spans = _offsets(tok, text)
  assert ids == tok.encode_as_ids(text)
  assert spans.shape == (len(ids), 2)
  assert np.all(spans[:, 0] <= spans[:, 1]) and np.all(np.diff(spans[:, 0]) >= 0)
  # every non-space raw character is covered by some token
  covered = np.zeros(len(text), bool)
  for a, b in spans:
    covered[a:b] = True
  assert all(covered[i] or text[i].isspace() for i in range(len(text)))


def test_offsets_on_random_unicode(tok):
  """Random mixes of the characters normalization changes: the character map must reproduce
  the tokenizer's normalization (it checks itself) and the ids must equal the tokenizer's."""
  alphabet = list("abcXYZ 019,.`'\"-") + [
    "  ",
    "\t",
    "\n",
    "\u00a0",
    "\u3000",
    "é",
    "e\u0301",
    "ﬁ",
    "½",
    "Σ",
    "İ",
    "ß",
    "Å",
    "한",
    "``",
    "''",
    "9,",
    "[MASK]",
    " [MASK] ",
    "<PAD>",
    "[cls]",
    "<unk>",
  ]
  rng = random.Random(7)
  for _ in range(200):
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
    ids, spans = _offsets(tok, text)
    assert ids == tok.encode_as_ids(text), text
    assert len(spans) == len(ids) and (spans[:, 1] <= len(text)).all()
    for i, (a, b) in zip(ids, spans):  # a literal special token spans exactly its own text
      if i in tok.all_special_ids and i != tok.unk_token_id:
        assert text[a:b].lower() == tok.convert_ids_to_tokens(i).lower(), text


def test_offsets_keep_raw_characters(tok):
  text = "Cafe\u0301 ``Quoted'' ﬁsh"
  ids, spans = _offsets(tok, text)
  pieces = [text[a:b] for a, b in spans if b > a]
  assert "Cafe\u0301" in "".join(pieces)  # the dropped accent stays inside the span
  assert "``" in pieces or any("``" in p for p in pieces)


OFFSET_TEXTS = [
  "Café naïve  résumé Zürich, 1,000,000 and 9, 12,5 in 1999, the 2,3,4 numbers",
  "  Cafe\u0301 ﬁne straße ΟΔΟΣ Σοφία x9, a1, $5,00 (paren) 3.14",
  "中文 北京大学 the fox, 日本語 7,000 Ångström",
]


def _trimmed(text, span):
  """transformers' span as ours: without the space a word starts with (transformers' SentencePiece
  offsets include it), and with the combining marks normalization dropped after its last letter
  (transformers' leave "e\u0301" half out)."""
  a, b = span
  while a < b and text[a].isspace():
    a += 1
  while a < b < len(text) and unicodedata.combining(text[b]):
    b += 1
  return a, b


@pytest.mark.parametrize("text", OFFSET_TEXTS)
def test_offsets_equal_transformers(tok, model_file, text):
  """Each token's span equals transformers' AlbertTokenizerFast's (whose first space we leave
  out); where we split "9," as the slow tokenizer does and the fast one does not, our pieces
  together cover its span."""
  import transformers

  fast = transformers.AlbertTokenizerFast(vocab_file=model_file)
  ref = fast(text, add_special_tokens=False, return_offsets_mapping=True)
  ref_pieces = fast.convert_ids_to_tokens(ref["input_ids"])
  ids, spans = _offsets(tok, text)
  pieces = tok.convert_ids_to_tokens(ids)
  assert ids == tok.encode_as_ids(text)
  j = 0
  for piece, span in zip(ref_pieces, ref["offset_mapping"]):
    expected = _trimmed(text, span)
    if pieces[j] == piece == "▁":  # whitespace only: ours is empty where the next token starts
      assert spans[j, 0] == spans[j, 1] == spans[j + 1, 0], text  # (transformers' covers a char)
      j += 1
      continue
    if pieces[j] == piece:
      assert tuple(spans[j]) == expected, (piece, text)
      j += 1
      continue
    assert tok._needs_split(piece), (piece, pieces[j], text)  # the only way the two differ
    k = j
    while "".join(pieces[j : k + 1]).lstrip("▁") != piece.lstrip("▁"):
      k += 1
    assert (spans[j, 0], spans[k, 1]) == expected, (piece, text)
    j = k + 1
  assert j == len(pieces)


def test_overflow_windows_and_batch_decode_equal_transformers(tok, model_file, hf_cls):
  """stride + return_overflowing_tokens give transformers' windows (ids, types, masks, the
  sample mapping, offsets), alone and on either side of a pair; batch_decode its texts."""
  import transformers

  fast = transformers.AlbertTokenizerFast(vocab_file=model_file)
  rng = random.Random(3)
  # Without "digit," (transformers' fast tokenizer does not split those, the slow one does) and
  # `` '' (for which transformers' span holds one of the two characters, ours both).
  words = [w for w in WORDS if not any(c.isdigit() for c in w) and "``" not in w and "''" not in w]
  long_texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) for _ in range(6)]
  questions = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(6)]
  cases = [
    ((long_texts,), dict(max_length=16, stride=4, truncation=True)),
    ((long_texts[0],), dict(max_length=12, stride=0, truncation=True)),
    ((questions, long_texts), dict(max_length=24, stride=6, truncation="only_second")),
    ((long_texts, questions), dict(max_length=20, stride=3, truncation="only_first")),
    (
      (questions, long_texts),
      dict(max_length=24, stride=5, truncation="only_second", padding=True),
    ),
  ]
  for args, kwargs in cases:
    ref = fast(*args, return_overflowing_tokens=True, return_offsets_mapping=True, **kwargs)
    ours = tok(*args, return_overflowing_tokens=True, return_offsets_mapping=True, **kwargs)
    assert len(set(ref["overflow_to_sample_mapping"])) < len(ref["input_ids"])  # some overflow
    assert set(ours) == set(ref), kwargs
    for key in ("input_ids", "token_type_ids", "attention_mask", "overflow_to_sample_mapping"):
      assert ours[key] == ref[key], (key, kwargs)
    sides = [[t] if isinstance(t, str) else t for t in args]
    for row, owner in enumerate(ref["overflow_to_sample_mapping"]):
      expected = [
        _trimmed(sides[side][owner], span)
        for side, span in zip(ref["token_type_ids"][row], ref["offset_mapping"][row])
      ]
      assert ours["offset_mapping"][row] == expected, kwargs
  windows = tok(
    long_texts,
    max_length=16,
    stride=4,
    truncation=True,
    padding=True,
    return_overflowing_tokens=True,
    return_tensors="np",
  )
  ref = fast(
    long_texts,
    max_length=16,
    stride=4,
    truncation=True,
    padding=True,
    return_overflowing_tokens=True,
  )
  np.testing.assert_array_equal(windows["input_ids"], ref["input_ids"])
  np.testing.assert_array_equal(
    windows["overflow_to_sample_mapping"], ref["overflow_to_sample_mapping"]
  )
  slow = hf_cls(model_file)  # whose decode ours follows (test_decode_parity)
  for skip in (False, True):
    expected = slow.batch_decode(ref["input_ids"], skip_special_tokens=skip)
    assert tok.batch_decode(windows["input_ids"], skip_special_tokens=skip) == expected
