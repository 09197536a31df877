"""ALBERT's SentencePiece tokenizer (its vocabulary is trained in `tokenizer_training.py`).

`AlbertTokenizer` gives the same pieces and ids as the slow (sentencepiece)
`transformers.AlbertTokenizer` of transformers 4.x on the same model file, without depending on
transformers:

* normalization as ALBERT does it (`normalize_text`): collapse whitespace and strip (remove_space),
  `` and '' to ", NFKD with combining marks dropped (unless keep_accents), lower-casing;
* pieces that end in a digit followed by "," are re-split (`9,` -> `9` `,`), as the original
  ALBERT/BERT
  tokenization does, so that numbers like "1,000" do not glue the comma to the digits;
* the literal special tokens ([CLS], [SEP], [MASK], <pad>, <unk>) in the text are kept whole, [MASK]
  eating the whitespace on its left, as transformers does.

`encode_as_ids` is the fast batch path for data pipelines: one multi-threaded sentencepiece call
for the
whole batch; only the rows that hold a piece needing the digit-comma split are patched in Python.
`train_tokenizer` (in `tokenizer_training.py`, re-exported here) trains a unigram model with ids
0..4 = <pad>, <unk>, [CLS], [SEP], [MASK] on text normalized the same way, streaming the files.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
import sentencepiece as spm

SPIECE_UNDERLINE = "▁"
VOCAB_FILE_NAME = "spiece.model"
# The special pieces and the ids the released ALBERT models (and train_tokenizer) give them.
SPECIAL_PIECES = {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
# The original ALBERT vocabulary was trained with these user-defined symbols (always split off).
ALBERT_USER_DEFINED_SYMBOLS = ("(", ")", '"', "-", ".", "–", "£", "€")

# Literal special tokens in the text are kept whole. The group makes re.split return them between
# the
# segments; longest first keeps leftmost-longest matching should one become a prefix of another.
_SPECIAL_RE = re.compile(
  "(" + "|".join(re.escape(t) for t in sorted(SPECIAL_PIECES.values(), key=len, reverse=True)) + ")"
)
# [MASK] behaves like a word: it takes the whitespace on its left (transformers: lstrip=True).
_LSTRIP_SPECIALS = frozenset({SPECIAL_PIECES["mask"]})


@functools.lru_cache(maxsize=1)
def _combining_marks_re() -> re.Pattern[str]:
  """Regex of every code point with a nonzero canonical combining class (built once, ~0.1 s)."""
  marks = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.combining(chr(c))]
  return re.compile("[" + "".join(re.escape(m) for m in marks) + "]")


def _lower(text: str) -> str:
  # transformers lower-cases character by character before anything else; that differs from
  # str.lower only for capital sigma, which str.lower turns into final sigma at word ends.
  return text.replace("\u03a3", "\u03c3").lower()


def _preprocess(text: str, remove_space: bool, keep_accents: bool, do_lower_case: bool) -> str:
  """ALBERT's `preprocess_text` (the original run_classifier/tokenization.py and transformers')."""
  if remove_space:
    text = " ".join(text.strip().split())
  text = text.replace("``", '"').replace("''", '"')
  if not keep_accents and not text.isascii():  # ASCII is already NFKD and has no combining marks
    text = unicodedata.normalize("NFKD", text)
    if not text.isascii():
      text = _combining_marks_re().sub("", text)
  if do_lower_case:
    text = text.lower()
  return text


def normalize_text(
  text: str, *, do_lower_case: bool = True, remove_space: bool = True, keep_accents: bool = False
) -> str:
  """`text` normalized as `AlbertTokenizer` does before sentencepiece (no special tokens in it)."""
  if do_lower_case:
    text = _lower(text)
  return _preprocess(text, remove_space, keep_accents, do_lower_case)


class BatchEncoding(dict):
  """The output of `AlbertTokenizer.__call__`: a dict whose keys also read as attributes."""

  def __getattr__(self, name: str) -> Any:
    try:
      return self[name]
    except KeyError:
      raise AttributeError(name) from None


# Single-character pieces the original ALBERT data code treats as word starts (_is_start_piece).
_START_PUNCTUATION = frozenset('!"#$%&"()*+,-./:;?@[\\]^_`{|}~')


class AlbertTokenizer:
  """SentencePiece tokenizer of ALBERT; pieces and ids match transformers' slow `AlbertTokenizer`.

  Args:
    spm_model_file: path of a SentencePiece model (`spiece.model`) holding the pieces <pad>, <unk>,
      [CLS], [SEP], [MASK].
    do_lower_case: lower-case the text.
    remove_space: strip the text and collapse runs of whitespace into one space.
    keep_accents: keep accents; otherwise NFKD-decompose and drop combining marks.
    num_threads: threads of sentencepiece's batch encoding (-1: all cores).

  Attributes:
    sp_model: the `sentencepiece.SentencePieceProcessor`.
    pad_token_id, unk_token_id, cls_token_id, sep_token_id, mask_token_id: ids of the special
    pieces,
      read from the model by piece (0..4 in ALBERT's vocabulary).
    word_start_mask: bool [vocab_size], True where a piece begins a word (as the original: starts
      with "▁" or "<", or is one punctuation character) and for control/unknown/special pieces;
      whole-word masking finds boundaries with `word_start_mask[ids]`.
  """

  def __init__(
    self,
    spm_model_file: str | os.PathLike,
    do_lower_case: bool = True,
    remove_space: bool = True,
    keep_accents: bool = False,
    *,
    num_threads: int = -1,
  ) -> None:
    path = os.fspath(spm_model_file)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"SentencePiece model file not found: {path!r}")
    with open(path, "rb") as f:
      proto = f.read()
    self._setup(proto, path, do_lower_case, remove_space, keep_accents, num_threads)

  def _setup(
    self,
    proto: bytes,
    path: str,
    do_lower_case: bool,
    remove_space: bool,
    keep_accents: bool,
    num_threads: int,
  ) -> None:
    if not isinstance(num_threads, int) or num_threads == 0 or num_threads < -1:
      raise ValueError(f"num_threads must be a positive int or -1 (all cores), got {num_threads!r}")
    sp = spm.SentencePieceProcessor()
    try:
      sp.LoadFromSerializedProto(proto)
    except Exception as e:  # sentencepiece raises RuntimeError/OSError with a terse message
      raise ValueError(f"{path!r} is not a valid SentencePiece model: {e}") from e
    self.sp_model = sp
    self.vocab_file = path
    self.do_lower_case = bool(do_lower_case)
    self.remove_space = bool(remove_space)
    self.keep_accents = bool(keep_accents)
    self.num_threads = num_threads
    self._proto = proto

    ids = {}
    for name, piece in SPECIAL_PIECES.items():
      i = sp.PieceToId(piece)
      ids[name] = i if sp.IdToPiece(i) == piece else None  # PieceToId answers unk when absent
    missing = [SPECIAL_PIECES[n] for n, i in ids.items() if i is None]
    if missing:
      raise ValueError(
        f"SentencePiece model {path!r} lacks the special pieces {missing}; ALBERT needs <pad>, "
        "<unk>, [CLS], [SEP], [MASK] (train one with albert_flax.train_tokenizer)"
      )
    self.pad_token_id: int = ids["pad"]
    self.unk_token_id: int = ids["unk"]
    self.cls_token_id: int = ids["cls"]
    self.sep_token_id: int = ids["sep"]
    self.mask_token_id: int = ids["mask"]
    self.all_special_ids = frozenset(ids.values())
    self.all_special_tokens = frozenset(SPECIAL_PIECES.values())

    n = len(sp)
    pieces = [sp.IdToPiece(i) for i in range(n)]
    # As the original create_pretraining_data.py's _is_start_piece: a piece starting with "▁" or
    # "<", or a single punctuation character, starts a word; so do control and unknown pieces.
    self.word_start_mask: np.ndarray = np.array(
      [
        p.startswith(SPIECE_UNDERLINE)
        or p.startswith("<")
        or p in _START_PUNCTUATION
        or sp.IsControl(i)
        or sp.IsUnknown(i)
        or i in self.all_special_ids
        for i, p in enumerate(pieces)
      ],
      dtype=bool,
    )
    # Ids whose piece needs the digit-comma split. An unknown piece shows its surface text, which
    # can end in "digit," only if "," itself has no piece: then rows with <unk> are redone as
    # strings.
    self._split_ids = frozenset(i for i, p in enumerate(pieces) if self._needs_split(p))
    comma = sp.PieceToId(",")
    self._unk_needs_strings = sp.IsUnknown(comma) or sp.IsControl(comma) or sp.IsUnused(comma)
    self._split_cache: dict[int, list[int]] = {}

  # ----------------------------------------------------------------- vocabulary
  @property
  def vocab_size(self) -> int:
    """Number of pieces in the SentencePiece model."""
    return len(self.sp_model)

  def __len__(self) -> int:
    return len(self.sp_model)

  def get_vocab(self) -> dict[str, int]:
    """piece -> id for every piece."""
    return {self.sp_model.IdToPiece(i): i for i in range(self.vocab_size)}

  def __getstate__(self) -> dict[str, Any]:
    # The processor is a C++ object: carry the serialized model so unpickling works in another
    # process (or machine) without the original file.
    return {
      "proto": self._proto,
      "path": self.vocab_file,
      "do_lower_case": self.do_lower_case,
      "remove_space": self.remove_space,
      "keep_accents": self.keep_accents,
      "num_threads": self.num_threads,
    }

  def __setstate__(self, state: dict[str, Any]) -> None:
    self._setup(
      state["proto"],
      state["path"],
      state["do_lower_case"],
      state["remove_space"],
      state["keep_accents"],
      state["num_threads"],
    )

  def __repr__(self) -> str:
    return (
      f"AlbertTokenizer({self.vocab_file!r}, vocab_size={self.vocab_size}, "
      f"do_lower_case={self.do_lower_case}, remove_space={self.remove_space}, "
      f"keep_accents={self.keep_accents})"
    )

  # ----------------------------------------------------------------- tokenize
  @staticmethod
  def _needs_split(piece: str) -> bool:
    return len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit()

  def _split_digit_comma(self, piece: str) -> list[str]:
    # `▁9,` -> `▁9` `,`: re-encode the piece without its comma (the original ALBERT/BERT rule).
    cur = self.sp_model.EncodeAsPieces(piece[:-1].replace(SPIECE_UNDERLINE, ""))
    if piece[0] != SPIECE_UNDERLINE and cur and cur[0][0] == SPIECE_UNDERLINE:
      # the piece continued a word: drop the "▁" that sentencepiece put at the start
      cur = cur[1:] if len(cur[0]) == 1 else [cur[0][1:]] + cur[1:]
    return cur + [piece[-1]]

  def _tokenize_normalized(self, text: str) -> list[str]:
    out: list[str] = []
    for piece in self.sp_model.encode(text, out_type=str):
      if self._needs_split(piece):
        out.extend(self._split_digit_comma(piece))
      else:
        out.append(piece)
    return out

  def tokenize(self, text: str) -> list[str]:
    """Pieces of `text` (no [CLS]/[SEP] added): normalization, sentencepiece, digit-comma split."""
    if not isinstance(text, str):
      raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    if self.do_lower_case:  # as transformers: lower-case all but the literal special tokens, ...
      parts = _SPECIAL_RE.split(text)
      text = "".join(p if i % 2 else _lower(p) for i, p in enumerate(parts))
    # ... then split on them, since lower-casing may make one ("<PAD>" -> "<pad>").
    parts = _SPECIAL_RE.split(text)  # segment, special, segment, ..., segment
    for i in range(1, len(parts), 2):
      if parts[i] in _LSTRIP_SPECIALS:
        parts[i - 1] = parts[i - 1].rstrip()
    out: list[str] = []
    for i, part in enumerate(parts):
      if i % 2:
        out.append(part)
      elif part:
        out.extend(
          self._tokenize_normalized(
            _preprocess(part, self.remove_space, self.keep_accents, self.do_lower_case)
          )
        )
    return out

  def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
    """Id of a piece, or ids of a list of pieces (unknown pieces -> unk_token_id)."""
    if isinstance(tokens, str):
      return self.sp_model.PieceToId(tokens)
    return [self.sp_model.PieceToId(t) for t in tokens]

  def _check_ids(self, ids: Sequence[int]) -> None:
    n = self.vocab_size
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
      raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {n})")

  def convert_ids_to_tokens(
    self, ids: int | Sequence[int] | np.ndarray, skip_special_tokens: bool = False
  ) -> str | list[str]:
    """Piece of an id, or pieces of a sequence of ids [seq]."""
    if isinstance(ids, (int, np.integer)):
      self._check_ids([int(ids)])
      return self.sp_model.IdToPiece(int(ids))
    ids = ids.reshape(-1).tolist() if isinstance(ids, np.ndarray) else [int(i) for i in ids]
    self._check_ids(ids)
    if skip_special_tokens:
      ids = [i for i in ids if i not in self.all_special_ids]
    return [self.sp_model.IdToPiece(i) for i in ids]

  def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
    """Join pieces into text; special tokens are written literally, set off by a space."""
    out, current, prev_special = "", [], False
    for tok in tokens:
      if tok in self.all_special_tokens:
        if not prev_special:
          out += " "
        out += (self.sp_model.DecodePieces(current) if current else "") + tok
        prev_special, current = True, []
      else:
        current.append(tok)
        prev_special = False
    out += self.sp_model.DecodePieces(current) if current else ""
    return out.strip()

  def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = False) -> str:
    """Text of one sequence of ids [seq] (special tokens written literally unless skipped)."""
    if isinstance(ids, np.ndarray) and ids.ndim != 1:
      raise ValueError(f"decode takes one sequence [seq], got an array of shape {ids.shape}")
    if isinstance(ids, (int, np.integer)):
      ids = [int(ids)]
    tokens = self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
    return self.convert_tokens_to_string(tokens)

  # ----------------------------------------------------------------- fast batch path
  def encode_as_ids(self, texts: str | Sequence[str]) -> list[int] | list[list[int]]:
    """Ids of one text or a batch (no special tokens added); equal to
    `convert_tokens_to_ids(tokenize(text))`, computed with one multi-threaded sentencepiece call.

    Returns a list of ids for a str, a list of such lists for a sequence of str.
    """
    single = isinstance(texts, str)
    batch = [texts] if single else texts
    if not isinstance(batch, Sequence):
      raise TypeError(
        f"encode_as_ids expects a str or a sequence of str, got {type(texts).__name__}"
      )
    normalized: list[str] = []
    slow: dict[int, list[int]] = {}  # rows holding literal special tokens: the exact string path
    for i, t in enumerate(batch):
      if not isinstance(t, str):
        raise TypeError(f"encode_as_ids: element {i} is a {type(t).__name__}, not a str")
      lowered = _lower(t) if self.do_lower_case else t
      # Every special token holds "<" or "[", and lower-casing never makes either.
      if ("<" in t or "[" in t) and (_SPECIAL_RE.search(t) or _SPECIAL_RE.search(lowered)):
        slow[i] = self.convert_tokens_to_ids(self.tokenize(t))
        normalized.append("")
      else:
        normalized.append(
          _preprocess(lowered, self.remove_space, self.keep_accents, self.do_lower_case)
        )
    rows = self.sp_model.encode(normalized, out_type=int, num_threads=self.num_threads)
    split_ids, unk = self._split_ids, self.unk_token_id
    for i, row in enumerate(rows):
      if i in slow:
        rows[i] = slow[i]
      elif self._unk_needs_strings and unk in row:
        rows[i] = self.convert_tokens_to_ids(self._tokenize_normalized(normalized[i]))
      elif not split_ids.isdisjoint(row):  # C-level scan; the Python loop below runs on few rows
        rows[i] = [j for t in row for j in (self._split_of(t) if t in split_ids else (t,))]
    return rows[0] if single else rows

  def _split_of(self, token_id: int) -> list[int]:
    ids = self._split_cache.get(token_id)
    if ids is None:
      ids = self.convert_tokens_to_ids(self._split_digit_comma(self.sp_model.IdToPiece(token_id)))
      self._split_cache[token_id] = ids
    return ids

  # ----------------------------------------------------------------- model inputs
  def build_inputs_with_special_tokens(
    self, token_ids_0: Sequence[int], token_ids_1: Sequence[int] | None = None
  ) -> list[int]:
    """`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`."""
    out = [self.cls_token_id, *token_ids_0, self.sep_token_id]
    if token_ids_1 is not None:
      out += [*token_ids_1, self.sep_token_id]
    return out

  def get_special_tokens_mask(
    self,
    token_ids_0: Sequence[int],
    token_ids_1: Sequence[int] | None = None,
    already_has_special_tokens: bool = False,
  ) -> list[int]:
    """1 for special tokens, 0 for sequence tokens, for build_inputs_with_special_tokens' output
    (or for `token_ids_0` itself if it already has them: every special id, <unk> too, is 1)."""
    if already_has_special_tokens:
      if token_ids_1 is not None:
        raise ValueError("token_ids_1 must be None when the ids already hold special tokens")
      return [1 if int(i) in self.all_special_ids else 0 for i in token_ids_0]
    mask = [1] + [0] * len(token_ids_0) + [1]
    if token_ids_1 is not None:
      mask += [0] * len(token_ids_1) + [1]
    return mask

  def create_token_type_ids_from_sequences(
    self, token_ids_0: Sequence[int], token_ids_1: Sequence[int] | None = None
  ) -> list[int]:
    """Segment ids: 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`."""
    types = [0] * (len(token_ids_0) + 2)
    if token_ids_1 is not None:
      types += [1] * (len(token_ids_1) + 1)
    return types

  def save_vocabulary(
    self, save_directory: str | os.PathLike, filename_prefix: str | None = None
  ) -> tuple[str]:
    """Write the model as `<save_directory>/[prefix-]spiece.model`; returns (path,)."""
    directory = os.fspath(save_directory)
    if not os.path.isdir(directory):
      raise NotADirectoryError(f"save_vocabulary: {directory!r} is not an existing directory")
    name = (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE_NAME
    out = os.path.join(directory, name)
    if os.path.isfile(self.vocab_file):
      if os.path.abspath(self.vocab_file) != os.path.abspath(out):
        shutil.copyfile(self.vocab_file, out)
    else:  # e.g. unpickled in another process: write the model we hold
      with open(out, "wb") as f:
        f.write(self._proto)
    return (out,)

  @staticmethod
  def _truncate_pair(a: list[int], b: list[int], n_remove: int) -> tuple[list[int], list[int]]:
    # transformers' "longest_first": take from the longer until equal, then split the rest,
    # the extra token (odd count) from the second sequence.
    first = min(abs(len(b) - len(a)), n_remove)
    second = n_remove - first
    if len(a) > len(b):
      ra, rb = first + second // 2, second - second // 2
    else:
      ra, rb = second // 2, first + second - second // 2
    return a[: len(a) - ra], b[: len(b) - rb]

  def __call__(
    self,
    text: str | Sequence[str],
    text_pair: str | Sequence[str] | None = None,
    *,
    add_special_tokens: bool = True,
    max_length: int | None = None,
    truncation: bool | str = False,
    padding: bool | str = False,
    return_tensors: str | None = None,
  ) -> BatchEncoding:
    """Encode a text (or pair), or a batch, into `input_ids`, `token_type_ids`, `attention_mask`.

    A str gives flat lists [seq]; a list gives lists of lists [batch][seq]; return_tensors="np"
    gives int32 arrays [batch, seq] (batch 1 for a str). Truncation is transformers'
    "longest_first" to `max_length` (special tokens included); padding is on the right with
    pad_token_id: True/"longest" to the longest row, "max_length" to `max_length`.
    """
    single = isinstance(text, str)
    if not single and not (isinstance(text, Sequence) and all(isinstance(t, str) for t in text)):
      raise TypeError("text must be a str or a list of str")
    if text_pair is not None and (
      single != isinstance(text_pair, str)
      or not single
      and (not isinstance(text_pair, Sequence) or len(text_pair) != len(text))
    ):
      raise ValueError(
        "text_pair must be a str when text is a str, a list of str as long "
        "as text when text is a list"
      )
    if not (isinstance(truncation, bool) or truncation in ("longest_first", "do_not_truncate")):
      raise ValueError(f"truncation must be True/'longest_first' or False, got {truncation!r}")
    if not (isinstance(padding, bool) or padding in ("longest", "max_length", "do_not_pad")):
      raise ValueError(
        f"padding must be one of False, True, 'longest', 'max_length', got {padding!r}"
      )
    if return_tensors not in (None, "np"):
      raise ValueError(f"return_tensors must be None or 'np', got {return_tensors!r}")
    if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < 1):
      raise ValueError(f"max_length must be a positive int, got {max_length!r}")
    truncate = truncation in (True, "longest_first")
    if (truncate or padding == "max_length") and max_length is None:
      raise ValueError(
        f"truncation=True and padding='max_length' need max_length (got "
        f"truncation={truncation!r}, padding={padding!r})"
      )
    n_special = (3 if text_pair is not None else 2) if add_special_tokens else 0
    if truncate and max_length < n_special:
      raise ValueError(f"max_length={max_length} leaves no room for the {n_special} special tokens")

    ids_a = self.encode_as_ids([text] if single else list(text))
    ids_b = (
      [None] * len(ids_a)
      if text_pair is None
      else self.encode_as_ids([text_pair] if single else list(text_pair))
    )
    input_ids, token_type_ids = [], []
    for a, b in zip(ids_a, ids_b):
      excess = len(a) + len(b or ()) + n_special - (max_length or 0)
      if truncate and excess > 0:
        a, b = (a[: len(a) - excess], None) if b is None else self._truncate_pair(a, b, excess)
      if add_special_tokens:
        input_ids.append(self.build_inputs_with_special_tokens(a, b))
        token_type_ids.append(self.create_token_type_ids_from_sequences(a, b))
      else:  # transformers gives type 0 to both sequences when no special tokens are added
        input_ids.append(a + (b or []))
        token_type_ids.append([0] * len(input_ids[-1]))

    longest = max(map(len, input_ids), default=0)
    target = (
      max_length if padding == "max_length" else longest if padding in (True, "longest") else None
    )
    if return_tensors == "np":
      if padding == "max_length" and longest > max_length:
        raise ValueError(
          f"a sequence has {longest} tokens, more than max_length={max_length}, "
          "and truncation is off: pass truncation=True to cut it"
        )
      if target is None and any(len(r) != longest for r in input_ids):
        raise ValueError(
          "sequences have different lengths: pass padding=True (or 'max_length') to return arrays"
        )
      # One vectorized scatter: the row-major True cells of `valid` take the concatenated rows.
      lengths = np.fromiter(map(len, input_ids), np.int64, len(input_ids))
      valid = np.arange(longest if target is None else target) < lengths[:, None]
      total = int(lengths.sum())
      out = {
        "input_ids": np.full(valid.shape, self.pad_token_id, np.int32),
        "token_type_ids": np.zeros(valid.shape, np.int32),
        "attention_mask": valid.astype(np.int32),
      }
      flat = itertools.chain.from_iterable
      out["input_ids"][valid] = np.fromiter(flat(input_ids), np.int32, total)
      out["token_type_ids"][valid] = np.fromiter(flat(token_type_ids), np.int32, total)
      return BatchEncoding(out)

    # Lists: rows longer than `target` (no truncation) stay whole, as in transformers.
    fills = [max(0, (target or 0) - len(r)) for r in input_ids]
    out = {
      "input_ids": [r + [self.pad_token_id] * f for r, f in zip(input_ids, fills)],
      "token_type_ids": [r + [0] * f for r, f in zip(token_type_ids, fills)],
      "attention_mask": [[1] * len(r) + [0] * f for r, f in zip(input_ids, fills)],
    }
    return BatchEncoding({k: v[0] for k, v in out.items()} if single else out)


def __getattr__(name: str) -> Any:
  # `train_tokenizer` lives in tokenizer_training.py (which imports this module for the
  # normalization); resolved on first use so neither module's import needs the other finished.
  if name == "train_tokenizer":
    from albert_flax.tokenizer_training import train_tokenizer

    return train_tokenizer
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
