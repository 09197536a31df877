"""ALBERT's SentencePiece tokenizer (its vocabulary is trained in `training.py`).

`AlbertTokenizer` gives the same pieces and ids as the slow (sentencepiece)
`transformers.AlbertTokenizer` of transformers 4.x on the same model file, without depending on
transformers:

* normalization as ALBERT does it (`normalize_text`): collapse whitespace and strip (remove_space),
  `` and '' to ", NFKD with combining marks dropped (unless keep_accents), lower-casing;
* pieces that end in a digit followed by "," are re-split (`9,` -> `9` `,`), as the original
  ALBERT/BERT tokenization does, so that numbers like "1,000" do not glue the comma to the digits;
* the literal special tokens ([CLS], [SEP], [MASK], <pad>, <unk>) in the text are kept whole, [MASK]
  eating the whitespace on its left, as transformers does.

`encode_as_ids` is the fast batch path for data pipelines: one multi-threaded sentencepiece call
for the whole batch; only the rows that hold a piece needing the digit-comma split are patched in
Python. Offsets (`return_offsets_mapping=True`) come from sentencepiece's piece spans in the
normalized text, mapped back to raw characters through `text_normalization.normalize_with_origin`.
The calling convention (pairs, truncation, padding, overflow windows) is `encoding.TokenizerBase`.
`train_tokenizer` (in `training.py`, re-exported here) trains a unigram model with ids
0..4 = <pad>, <unk>, [CLS], [SEP], [MASK] on text normalized the same way, streaming the files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import sentencepiece as spm

from albert_flax import paths
from albert_flax.tokenization.encoding import BatchEncoding, TokenizerBase
from albert_flax.tokenization.text_normalization import lower as _lower
from albert_flax.tokenization.text_normalization import (
  lower_with_origin,
  normalize_text,
  normalize_with_origin,
)
from albert_flax.tokenization.text_normalization import preprocess_text as _preprocess
from albert_flax.tokenization.training import SPECIAL_PIECES, train_tokenizer
from albert_flax.workdir import TOKENIZER_FILE

__all__ = [
  "AlbertTokenizer",
  "BatchEncoding",
  "normalize_text",
  "train_tokenizer",
  "SPECIAL_PIECES",
]

SPIECE_UNDERLINE = "▁"
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


# Single-character pieces the original ALBERT data code treats as word starts (_is_start_piece).
_START_PUNCTUATION = frozenset('!"#$%&"()*+,-./:;?@[\\]^_`{|}~')


class AlbertTokenizer(TokenizerBase):
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
    if not paths.path(path).is_file():  # local or gs://...
      raise FileNotFoundError(f"SentencePiece model file not found: {path!r}")
    # sentencepiece opens local files only: it gets the serialized model instead.
    proto = paths.path(path).read_bytes()
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

  # ----------------------------------------------------------------- offsets
  def _encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], np.ndarray]]:
    """Ids of each text (equal to `encode_as_ids`) and each token's raw character span
    int64 [T, 2]: token t covers text[s, e). As transformers' AlbertTokenizerFast, except that
    the space a word starts with ("▁the") is not part of its span (as BertTokenizerFast's spans
    leave it out), so a span is the word; a token that stands for whitespace only (a lone "▁")
    has an empty span at the next raw character."""
    return [self._offsets_one(t) for t in texts]

  def _offsets_one(self, text: str) -> tuple[list[int], np.ndarray]:
    if not isinstance(text, str):
      raise TypeError(f"expected a str, got {type(text).__name__}")
    current, origin = text, list(range(len(text)))
    if self.do_lower_case:  # as tokenize(): lower-case all but the special tokens, then split
      chunks, origins, pos = [], [], 0
      for m in [*_SPECIAL_RE.finditer(text), None]:
        stop = m.start() if m is not None else len(text)
        lowered, where = lower_with_origin(text[pos:stop], list(range(pos, stop)))
        chunks.append(lowered)
        origins += where
        if m is not None:
          chunks.append(m.group())
          origins += range(m.start(), m.end())
          pos = m.end()
      current, origin = "".join(chunks), origins
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    matches = list(_SPECIAL_RE.finditer(current))
    for m in [*matches, None]:
      stop = m.start() if m is not None else len(current)
      segment = current[pos:stop]
      if m is not None and m.group() in _LSTRIP_SPECIALS:
        segment = segment.rstrip()
      if segment:
        self._segment_offsets(segment, origin[pos : pos + len(segment)], text, ids, spans)
      if m is not None:
        ids.append(self.sp_model.PieceToId(m.group()))
        spans.append((origin[m.start()], origin[m.end() - 1] + 1))
        pos = m.end()
    return ids, np.array(spans, np.int64).reshape(-1, 2)

  def _segment_offsets(
    self, segment: str, seg_origin: list[int], text: str, ids: list, spans: list
  ) -> None:
    """Append the ids and raw spans of `segment` (a stretch of `text` without special tokens,
    whose characters come from text[seg_origin[i]])."""
    normalized, local = normalize_with_origin(
      segment,
      do_lower_case=self.do_lower_case,
      remove_space=self.remove_space,
      keep_accents=self.keep_accents,
    )
    seg_origin = np.asarray(seg_origin, np.int64)
    origin = seg_origin[local]
    # Raw position of normalized char i, and one past the segment for spans reaching its end.
    origin_end = np.append(origin, seg_origin[-1] + 1 if len(seg_origin) else 0)
    proto = self.sp_model.encode(normalized, return_type="proto")
    encoded = normalized.encode("utf-8")
    char_of_byte = np.zeros(len(encoded) + 1, np.int64)  # byte offset -> char offset
    widths = np.fromiter((len(c.encode("utf-8")) for c in normalized), np.int64, len(normalized))
    char_of_byte[:-1] = np.repeat(np.arange(len(normalized)), widths)
    char_of_byte[-1] = len(normalized)

    def raw_span(begin: int, end: int) -> tuple[int, int]:
      while begin < end and normalized[begin] == " ":
        begin += 1
      if begin >= end:
        return int(origin_end[begin]), int(origin_end[begin])
      start = int(origin[begin])
      # Up to where the next normalized character comes from, so that raw characters the
      # normalization dropped (a combining accent, the second ` of ``) stay inside the span;
      # never past trailing raw whitespace, never less than the last character itself.
      stop = int(origin_end[end])
      while stop > start and text[stop - 1].isspace():
        stop -= 1
      return start, max(stop, int(origin[end - 1]) + 1)

    for piece in proto.pieces:
      begin, end = int(char_of_byte[piece.begin]), int(char_of_byte[piece.end])
      if not self._needs_split(piece.piece):
        ids.append(piece.id)
        spans.append(raw_span(begin, end))
        continue
      parts = self._split_digit_comma(piece.piece)
      # The parts before the comma (the last normalized character) take the characters of the
      # piece in turn; a lone "▁" takes none (an empty span, as raw_span gives it).
      pos = begin
      while pos < end - 1 and normalized[pos] == " ":
        pos += 1
      lengths = [len(part.lstrip(SPIECE_UNDERLINE)) for part in parts[:-1]]
      # (Should sentencepiece's own normalization have changed a character, all take the whole.)
      exact = "".join(p.lstrip(SPIECE_UNDERLINE) for p in parts[:-1]) == normalized[pos : end - 1]
      for part, n in zip(parts[:-1], lengths):
        ids.append(self.sp_model.PieceToId(part))
        spans.append(raw_span(pos, pos + n) if exact else raw_span(begin, end - 1))
        pos += n
      ids.append(self.sp_model.PieceToId(parts[-1]))
      spans.append(raw_span(end - 1, end))

  def _split_of(self, token_id: int) -> list[int]:
    ids = self._split_cache.get(token_id)
    if ids is None:
      ids = self.convert_tokens_to_ids(self._split_digit_comma(self.sp_model.IdToPiece(token_id)))
      self._split_cache[token_id] = ids
    return ids

  def save_vocabulary(
    self, save_directory: str | os.PathLike, filename_prefix: str | None = None
  ) -> tuple[str]:
    """Write the model we hold (the bytes of the file it was read from) as
    `<save_directory>/[prefix-]spiece.model`, local or gs://...; returns (path,)."""
    out = self._vocabulary_path(save_directory, filename_prefix, TOKENIZER_FILE)
    if paths.path(self.vocab_file) != paths.path(out):
      paths.write_bytes(out, self._proto)
    return (out,)

  def tokenizer_config(self) -> dict[str, Any]:
    """tokenizer_config.json's content (`save_pretrained`): AlbertTokenizer and its settings."""
    return {
      "tokenizer_class": "AlbertTokenizer",
      "do_lower_case": self.do_lower_case,
      "remove_space": self.remove_space,
      "keep_accents": self.keep_accents,
    }
