"""BERT's WordPiece tokenizer, for the Chinese ALBERT models (vocab.txt / vocab_chinese.txt).

Google's albert_*_zh, brightmart's albert_zh and transformers' albert_chinese_* pair ALBERT
weights with BERT's vocabulary: every CJK character its own token, "##" marking a piece that
continues a word. `WordPieceTokenizer` gives the same pieces and ids as transformers' slow
`BertTokenizer` on the same vocabulary:

* BERT's basic tokenization: text cleanup (control characters and U+FFFD dropped, whitespace to
  spaces), a space around every CJK character, lower-casing, NFC, accents stripped (NFD, marks
  dropped) when do_lower_case (or as strip_accents says), split on whitespace and punctuation;
* greedy longest-match-first WordPiece over each word, a word without a match (or longer than
  max_input_chars_per_word characters) becoming [UNK];
* the literal special tokens in the text ([CLS], [SEP], [MASK], [PAD], [UNK]) kept whole.

`encode_as_ids` (the data pipeline's path) and `tokenize` run BERT's basic tokenization in Python
(`text_normalization.bert_words`: str.translate tables over each text's distinct characters) and
WordPiece with a per-word cache: on this machine several times faster than the `tokenizers`
library's Rust BertNormalizer + WordPiece (benchmarks/bench_tokenizer.py), and held to the slow
BertTokenizer by the tests. Offsets (`return_offsets_mapping=True`) come from the `tokenizers`
library (BertNormalizer + NFC, BertPreTokenizer, WordPiece: the algorithm of BertTokenizerFast,
whose spans the tests compare). The calling convention (pairs, truncation, padding, offsets,
overflow windows) is `encoding.TokenizerBase`, the same as `AlbertTokenizer`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from albert_flax import paths
from albert_flax.tokenization.encoding import TokenizerBase
from albert_flax.tokenization.text_normalization import bert_words
from albert_flax.workdir import WORDPIECE_VOCAB_FILE

# BERT's special tokens by name (the constructor takes others).
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
CONTINUATION = "##"
_CACHE_LIMIT = 1 << 20  # words whose ids encode_as_ids remembers
# transformers' clean_up_tokenization: the spaces decoding leaves before punctuation and clitics.
_CLEAN_UP = (
  (" .", "."),
  (" ?", "?"),
  (" !", "!"),
  (" ,", ","),
  (" ' ", "'"),
  (" n't", "n't"),
  (" 'm", "'m"),
  (" 's", "'s"),
  (" 've", "'ve"),
  (" 're", "'re"),
)


def read_vocab(vocab_file: str | os.PathLike) -> list[str]:
  """The tokens of a WordPiece vocabulary file, one a line, the line number being the id."""
  path = os.fspath(vocab_file)
  if not paths.path(path).is_file():  # local or gs://...
    raise FileNotFoundError(f"WordPiece vocabulary file not found: {path!r}")
  with paths.open_text(path) as f:
    tokens = [line.rstrip("\n") for line in f]
  if not tokens:
    raise ValueError(f"WordPiece vocabulary file {path!r} is empty")
  return tokens


def bert_normalizer(
  do_lower_case: bool, strip_accents: bool | None = None, tokenize_chinese_chars: bool = True
) -> Any:
  """BERT's normalization as a `tokenizers` normalizer (the tokenizer's, and its trainer's).

  BertTokenizer's order: clean up, space CJK characters, lower-case, NFC (so that "e\u0301"
  meets a cased vocabulary's "é"), then strip accents (NFD, marks dropped) when strip_accents
  says so, or when lower-casing if it is None.
  """
  from tokenizers import normalizers

  steps = [
    normalizers.BertNormalizer(
      clean_text=True,
      handle_chinese_chars=tokenize_chinese_chars,
      strip_accents=False,
      lowercase=do_lower_case,
    ),
    normalizers.NFC(),
  ]
  if do_lower_case if strip_accents is None else strip_accents:
    steps += [normalizers.NFD(), normalizers.StripAccents()]
  return normalizers.Sequence(steps)


class WordPieceTokenizer(TokenizerBase):
  """BERT's WordPiece tokenizer; pieces and ids match transformers' slow `BertTokenizer`.

  Args:
    vocab_file: a WordPiece vocabulary (vocab.txt: one token a line, the line number its id).
    do_lower_case: lower-case the text (and strip accents unless strip_accents=False).
    strip_accents: None: strip them when lower-casing; True/False: always/never.
    tokenize_chinese_chars: split CJK characters one by one.
    unk_token, pad_token, cls_token, sep_token, mask_token: the special tokens' text.
    max_input_chars_per_word: longer words become unk_token.

  Attributes:
    pad_token_id, unk_token_id, cls_token_id, sep_token_id, mask_token_id: the special ids.
    word_start_mask: bool [vocab_size], False for "##" continuation pieces; whole-word masking
      finds word boundaries with `word_start_mask[ids]`.
  """

  def __init__(
    self,
    vocab_file: str | os.PathLike,
    do_lower_case: bool = True,
    *,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
    unk_token: str = SPECIAL_TOKENS["unk"],
    pad_token: str = SPECIAL_TOKENS["pad"],
    cls_token: str = SPECIAL_TOKENS["cls"],
    sep_token: str = SPECIAL_TOKENS["sep"],
    mask_token: str = SPECIAL_TOKENS["mask"],
    max_input_chars_per_word: int = 100,
  ) -> None:
    path = os.fspath(vocab_file)
    settings = dict(
      do_lower_case=bool(do_lower_case),
      strip_accents=strip_accents,
      tokenize_chinese_chars=bool(tokenize_chinese_chars),
      special_tokens={
        "pad": pad_token,
        "unk": unk_token,
        "cls": cls_token,
        "sep": sep_token,
        "mask": mask_token,
      },
      max_input_chars_per_word=int(max_input_chars_per_word),
    )
    self._setup(read_vocab(path), path, settings)

  def _setup(self, tokens: list[str], path: str, settings: dict[str, Any]) -> None:
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    if settings["strip_accents"] not in (None, True, False):
      raise ValueError(
        f"strip_accents must be None, True or False, got {settings['strip_accents']}"
      )
    self.vocab_file = path
    self._tokens = tokens
    self._settings = settings
    self.do_lower_case: bool = settings["do_lower_case"]
    self.strip_accents: bool | None = settings["strip_accents"]
    self.tokenize_chinese_chars: bool = settings["tokenize_chinese_chars"]
    self.max_input_chars_per_word: int = settings["max_input_chars_per_word"]
    # As BertTokenizer's load_vocab: a token seen twice keeps its last line.
    self.vocab: dict[str, int] = {t: i for i, t in enumerate(tokens)}
    specials = settings["special_tokens"]
    missing = [t for t in specials.values() if t not in self.vocab]
    if missing:
      raise ValueError(
        f"WordPiece vocabulary {path!r} lacks the special tokens {missing}; ALBERT needs "
        f"{list(specials.values())}"
      )
    self.special_tokens: dict[str, str] = dict(specials)
    self.pad_token_id: int = self.vocab[specials["pad"]]
    self.unk_token_id: int = self.vocab[specials["unk"]]
    self.cls_token_id: int = self.vocab[specials["cls"]]
    self.sep_token_id: int = self.vocab[specials["sep"]]
    self.mask_token_id: int = self.vocab[specials["mask"]]
    self.all_special_ids = frozenset(self.vocab[t] for t in specials.values())
    self.all_special_tokens = frozenset(specials.values())

    tk = Tokenizer(
      models.WordPiece(
        self.vocab,
        unk_token=specials["unk"],
        max_input_chars_per_word=self.max_input_chars_per_word,
        continuing_subword_prefix=CONTINUATION,
      )
    )
    tk.normalizer = bert_normalizer(
      self.do_lower_case, self.strip_accents, self.tokenize_chinese_chars
    )
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # Literal special tokens are found in the raw text, before normalization (as BertTokenizer:
    # "[CLS]" stays whole, "[cls]" is ordinary text).
    tk.add_special_tokens(
      [AddedToken(t, special=True, normalized=False) for t in specials.values()]
    )
    self._tokenizer = tk
    # Literal special tokens, longest first (leftmost-longest, as transformers' trie splits).
    alternatives = sorted(specials.values(), key=len, reverse=True)
    self._special_re = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
    self._cache: dict[str, list[int]] = {}
    self.word_start_mask: np.ndarray = np.array(
      [not t.startswith(CONTINUATION) for t in tokens], dtype=bool
    )
    self.word_start_mask[list(self.all_special_ids)] = True

  # ----------------------------------------------------------------- vocabulary
  @property
  def vocab_size(self) -> int:
    """Number of tokens (lines) in the vocabulary."""
    return len(self._tokens)

  def get_vocab(self) -> dict[str, int]:
    """token -> id for every token."""
    return dict(self.vocab)

  def __getstate__(self) -> dict[str, Any]:
    # The Rust tokenizer is rebuilt from the vocabulary we hold, without the file.
    return {"tokens": self._tokens, "path": self.vocab_file, "settings": self._settings}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self._setup(state["tokens"], state["path"], state["settings"])

  def __repr__(self) -> str:
    return (
      f"WordPieceTokenizer({self.vocab_file!r}, vocab_size={self.vocab_size}, "
      f"do_lower_case={self.do_lower_case}, strip_accents={self.strip_accents})"
    )

  # ----------------------------------------------------------------- tokenize
  def tokenize(self, text: str) -> list[str]:
    """Pieces of `text` (no [CLS]/[SEP] added): basic tokenization, then WordPiece."""
    if not isinstance(text, str):
      raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    return [self._tokens[i] for i in self._ids_of(text)]

  def _word_ids(self, word: str) -> list[int]:
    """Greedy longest-match-first WordPiece of one word (BertTokenizer's WordpieceTokenizer):
    the longest vocabulary entry at each position ("##" after the first); [UNK] for the whole
    word when some position has none, or when it is longer than max_input_chars_per_word."""
    if len(word) > self.max_input_chars_per_word:
      return [self.unk_token_id]
    vocab, ids, start = self.vocab, [], 0
    while start < len(word):
      for end in range(len(word), start, -1):
        piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
        if piece in vocab:
          ids.append(vocab[piece])
          start = end
          break
      else:
        return [self.unk_token_id]
    return ids

  def _ids_of(self, text: str) -> list[int]:
    """Ids of one text: literal special tokens kept whole, BERT's basic tokenization of the
    rest (text_normalization.bert_words), WordPiece of each word (cached per word)."""
    out: list[int] = []
    cache = self._cache
    if len(cache) > _CACHE_LIMIT:  # bounded memory over an endless corpus
      cache.clear()
    parts = self._special_re.split(text) if self._special_re.search(text) else [text]
    for k, part in enumerate(parts):
      if k % 2:  # a special token
        out.append(self.vocab[part])
        continue
      words = bert_words(part, self.do_lower_case, self.strip_accents, self.tokenize_chinese_chars)
      for word in words:
        ids = cache.get(word)
        if ids is None:
          ids = cache[word] = self._word_ids(word)
        out.extend(ids)
    return out

  def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
    """Id of a token, or ids of a list of tokens (unknown tokens -> unk_token_id)."""
    if isinstance(tokens, str):
      return self.vocab.get(tokens, self.unk_token_id)
    return [self.vocab.get(t, self.unk_token_id) for t in tokens]

  def convert_ids_to_tokens(
    self, ids: int | Sequence[int] | np.ndarray, skip_special_tokens: bool = False
  ) -> str | list[str]:
    """Token of an id, or tokens of a sequence of ids [seq]."""
    n = self.vocab_size
    if isinstance(ids, (int, np.integer)):
      if not 0 <= int(ids) < n:
        raise ValueError(f"token id {int(ids)} is outside the vocabulary [0, {n})")
      return self._tokens[int(ids)]
    ids = ids.reshape(-1).tolist() if isinstance(ids, np.ndarray) else [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
      raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {n})")
    if skip_special_tokens:
      ids = [i for i in ids if i not in self.all_special_ids]
    return [self._tokens[i] for i in ids]

  def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
    """Join tokens into text as transformers' BertTokenizer.decode does: "##" pieces glued to
    the previous one, special tokens set off by spaces, spaces before punctuation removed."""
    parts, current = [], []
    for tok in tokens:
      if tok in self.all_special_tokens:
        if current:
          parts.append(" ".join(current).replace(" " + CONTINUATION, "").strip())
          current = []
        parts.append(tok)
      else:
        current.append(tok)
    if current:
      parts.append(" ".join(current).replace(" " + CONTINUATION, "").strip())
    text = " ".join(parts)
    for before, after in _CLEAN_UP:
      text = text.replace(before, after)
    return text

  # ----------------------------------------------------------------- fast batch path
  def _check_batch(self, texts: Any, caller: str) -> tuple[bool, list[str]]:
    single = isinstance(texts, str)
    batch = [texts] if single else texts
    if not isinstance(batch, Sequence):
      raise TypeError(f"{caller} expects a str or a sequence of str, got {type(texts).__name__}")
    for i, t in enumerate(batch):
      if not isinstance(t, str):
        raise TypeError(f"{caller}: element {i} is a {type(t).__name__}, not a str")
    return single, list(batch)

  def encode_as_ids(self, texts: str | Sequence[str]) -> list[int] | list[list[int]]:
    """Ids of one text or a batch (no special tokens added); equal to
    `convert_tokens_to_ids(tokenize(text))`, the batch encoded in one multi-threaded call.

    Returns a list of ids for a str, a list of such lists for a sequence of str.
    """
    single, batch = self._check_batch(texts, "encode_as_ids")
    rows = [self._ids_of(t) for t in batch]
    return rows[0] if single else rows

  def _encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], np.ndarray]]:
    """Ids and raw character spans int64 [T, 2] of each text (those of BertTokenizerFast: a
    "##" piece covers its characters only; a stripped accent stays inside its letter's span)."""
    _, batch = self._check_batch(texts, "encode")
    return [
      (e.ids, np.array(e.offsets, np.int64).reshape(-1, 2))
      for e in self._tokenizer.encode_batch(batch, add_special_tokens=False)
    ]

  # ----------------------------------------------------------------- saving
  def save_vocabulary(
    self, save_directory: str | os.PathLike, filename_prefix: str | None = None
  ) -> tuple[str]:
    """Write the vocabulary as `<save_directory>/[prefix-]vocab.txt` (local or gs://...);
    returns (path,)."""
    out = self._vocabulary_path(save_directory, filename_prefix, WORDPIECE_VOCAB_FILE)
    paths.write_text(out, "".join(t + "\n" for t in self._tokens))
    return (out,)

  def tokenizer_config(self) -> dict[str, Any]:
    """tokenizer_config.json's content (`save_pretrained`): BertTokenizer and these settings."""
    return {
      "tokenizer_class": "BertTokenizer",
      "do_lower_case": self.do_lower_case,
      "strip_accents": self.strip_accents,
      "tokenize_chinese_chars": self.tokenize_chinese_chars,
      **{f"{name}_token": token for name, token in self.special_tokens.items()},
    }
