"""Token ids of a text together with the character span of each token in the ORIGINAL text.

SQuAD needs to map an answer given in characters of the raw context to tokens, and a predicted
token span back to raw characters. ALBERT's tokenizer first normalizes the text (lower-casing,
whitespace collapsing, `` / '' -> ", NFKD with accents dropped), which changes lengths ("ﬁ" ->
"fi", "é" -> "e" + a dropped mark, runs of spaces -> one), then sentencepiece cuts the normalized
text. So:

1. `normalize_with_origin` redoes the tokenizer's normalization one character at a time,
   remembering for every normalized character the raw character it came from, and checks that
   the result equals `albert_flax.tokenization.normalize_text` (the tokenizer's own function);
2. sentencepiece's proto output gives each piece's byte span in the normalized text;
3. the spans go back to raw characters through step 1's map; the space a piece starts with
   ("▁the") is not part of its span.

Pieces that end in a digit followed by "," are split as the tokenizer splits them ("▁9," ->
"▁9" ","), so the ids equal `AlbertTokenizer.encode_as_ids` for text without literal special
tokens ([CLS], <pad>, ...; those are plain text here).
"""

from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np

from albert_flax.tokenization import SPIECE_UNDERLINE, normalize_text


def _lower(text: str) -> str:
  # The tokenizer maps capital sigma to the non-final sigma before lower-casing, which makes
  # lower-casing independent of the neighbouring characters.
  return text.replace("\u03a3", "\u03c3").lower()


@functools.lru_cache(maxsize=65536)
def _strip_accents(ch: str) -> str:
  # NFKD per character equals NFKD of the string up to the order of combining marks, and
  # every combining mark is dropped.
  return "".join(d for d in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(d))


def _substitute(
  text: str, origin: list[int], pattern: re.Pattern[str], repl
) -> tuple[str, list[int]]:
  """re.sub with origins: every character of a replacement keeps the origin of the first
  character of its match; untouched stretches are copied whole (fast on long texts)."""
  pieces, where, last = [], [], 0
  for m in pattern.finditer(text):
    start, end = m.span()
    replacement = repl(m.group())
    pieces += [text[last:start], replacement]
    where += origin[last:start]
    where += [origin[start]] * len(replacement)
    last = end
  if not pieces:
    return text, origin
  pieces.append(text[last:])
  where += origin[last:]
  return "".join(pieces), where


_EVERY_CHAR = re.compile(".", re.DOTALL)
# A run of whitespace that is not a single plain space (str.split's whitespace is regex \s).
_SPACE_RUN = re.compile(r"\s{2,}|[^\S ]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _lower_with_origin(text: str, origin: list[int]) -> tuple[str, list[int]]:
  lowered = _lower(text)
  if len(lowered) == len(text):  # one character each (the usual case): origins unchanged
    return lowered, origin
  return _substitute(text, origin, _EVERY_CHAR, _lower)


def normalize_with_origin(
  text: str, *, do_lower_case: bool = True, remove_space: bool = True, keep_accents: bool = False
) -> tuple[str, np.ndarray]:
  """(normalized text, origin): origin[i] is the index in `text` of the character that
  normalized character i comes from (int64 [len(normalized)])."""
  current, origin = text, list(range(len(text)))
  if do_lower_case:
    current, origin = _lower_with_origin(current, origin)
  if remove_space:
    # " ".join(text.strip().split()): strip, then each run of whitespace becomes one space
    # (with the origin of the run's first character).
    begin = len(current) - len(current.lstrip())
    stop = len(current.rstrip())
    current, origin = current[begin:stop], origin[begin:stop]
    current, origin = _substitute(current, origin, _SPACE_RUN, lambda _: " ")
  for pair in ("``", "''"):  # str.replace: left to right, non-overlapping, one after the other
    current, origin = _substitute(current, origin, re.compile(pair), lambda _: '"')
  if not keep_accents:
    current, origin = _substitute(current, origin, _NON_ASCII, _strip_accents)
  if do_lower_case:
    current, origin = _lower_with_origin(current, origin)
  expected = normalize_text(
    text, do_lower_case=do_lower_case, remove_space=remove_space, keep_accents=keep_accents
  )
  if current != expected:
    raise RuntimeError(
      "character-level normalization disagrees with the tokenizer's for "
      f"{text[:80]!r}: {current[:80]!r} vs {expected[:80]!r}"
    )
  return current, np.asarray(origin, np.int64)


def _needs_split(piece: str) -> bool:
  return len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit()


def _split_digit_comma(sp_model, piece: str) -> list[str]:
  # The original ALBERT rule (tokenization.encode_pieces): re-encode the piece without its
  # comma; when the piece continued a word, drop the "▁" the re-encoding starts with.
  pieces = sp_model.EncodeAsPieces(piece[:-1].replace(SPIECE_UNDERLINE, ""))
  if piece[0] != SPIECE_UNDERLINE and pieces and pieces[0][0] == SPIECE_UNDERLINE:
    pieces = pieces[1:] if len(pieces[0]) == 1 else [pieces[0][1:]] + pieces[1:]
  return pieces + [piece[-1]]


def tokenize_with_offsets(tokenizer, text: str) -> tuple[list[int], np.ndarray]:
  """Ids of `text` (no special tokens) and each token's raw character span.

  Args:
    tokenizer: an `albert_flax.AlbertTokenizer`.
    text: the raw text.

  Returns:
    (ids [T], spans int64 [T, 2]): token t covers text[spans[t, 0]:spans[t, 1]]; a token that
    stands for whitespace only (a lone "▁") has an empty span at the next raw character.
  """
  normalized, origin = normalize_with_origin(
    text,
    do_lower_case=tokenizer.do_lower_case,
    remove_space=tokenizer.remove_space,
    keep_accents=tokenizer.keep_accents,
  )
  sp = tokenizer.sp_model
  proto = sp.encode(normalized, return_type="proto")
  encoded = normalized.encode("utf-8")
  # byte offset -> char offset in `normalized`
  char_of_byte = np.zeros(len(encoded) + 1, np.int64)
  byte = 0
  for i, ch in enumerate(normalized):
    width = len(ch.encode("utf-8"))
    char_of_byte[byte : byte + width] = i
    byte += width
  char_of_byte[len(encoded)] = len(normalized)
  # raw position of normalized char i, and one past the end for spans that reach the end
  origin_end = np.append(origin, len(text))

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

  ids: list[int] = []
  spans: list[tuple[int, int]] = []
  for piece in proto.pieces:
    begin, end = int(char_of_byte[piece.begin]), int(char_of_byte[piece.end])
    if not _needs_split(piece.piece):
      ids.append(piece.id)
      spans.append(raw_span(begin, end))
      continue
    parts = _split_digit_comma(sp, piece.piece)
    # the comma is the last normalized char; the rest covers the digits before it
    body = raw_span(begin, end - 1)
    for part in parts[:-1]:
      ids.append(sp.PieceToId(part))
      spans.append(body)
    ids.append(sp.PieceToId(parts[-1]))
    spans.append(raw_span(end - 1, end))
  return ids, np.array(spans, np.int64).reshape(-1, 2)
