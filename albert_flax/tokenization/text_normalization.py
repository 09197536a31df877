"""ALBERT's text normalization, once: the string form the tokenizer and its trainer use, and the
same steps with a map back to the raw characters, from which the tokenizer's offsets come.

ALBERT normalizes before sentencepiece (the original `preprocess_text`, as transformers' slow
`AlbertTokenizer`): lower-case, strip and collapse whitespace (remove_space), `` and '' to ",
NFKD with combining marks dropped (unless keep_accents), lower-case again. `normalize_text` is the
fast string form; `normalize_with_origin` does the same steps keeping, for every normalized
character, the index of the raw character it comes from, and checks that it agrees with
`normalize_text`.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Callable

import numpy as np


@functools.lru_cache(maxsize=1)
def _combining_marks_re() -> re.Pattern[str]:
  """Regex of every code point with a nonzero canonical combining class (built once, ~0.1 s)."""
  marks = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.combining(chr(c))]
  return re.compile("[" + "".join(re.escape(m) for m in marks) + "]")


def lower(text: str) -> str:
  """Lower-casing as transformers does it, character by character: that differs from str.lower
  only for capital sigma, which str.lower turns into final sigma at word ends."""
  return text.replace("\u03a3", "\u03c3").lower()


def preprocess_text(text: str, remove_space: bool, keep_accents: bool, do_lower_case: bool) -> str:
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
    text = lower(text)
  return preprocess_text(text, remove_space, keep_accents, do_lower_case)


# ----------------------------------------------------------------- with origins


@functools.lru_cache(maxsize=65536)
def _strip_accents(ch: str) -> str:
  # NFKD per character equals NFKD of the string up to the order of combining marks, and
  # every combining mark is dropped.
  return "".join(d for d in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(d))


def _substitute(
  text: str, origin: list[int], pattern: re.Pattern[str], repl: Callable[[str], str]
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
_QUOTES = (re.compile("``"), re.compile("''"))


def lower_with_origin(text: str, origin: list[int]) -> tuple[str, list[int]]:
  """`lower(text)` and the origin of each of its characters (`origin` is that of `text`'s)."""
  lowered = lower(text)
  if len(lowered) == len(text):  # one character each (the usual case): origins unchanged
    return lowered, origin
  return _substitute(text, origin, _EVERY_CHAR, lower)


def normalize_with_origin(
  text: str, *, do_lower_case: bool = True, remove_space: bool = True, keep_accents: bool = False
) -> tuple[str, np.ndarray]:
  """(normalized text, origin): `normalize_text(text)` and, for each of its characters, the index
  in `text` of the raw character it comes from (int64 [len(normalized)])."""
  current, origin = text, list(range(len(text)))
  if do_lower_case:
    current, origin = lower_with_origin(current, origin)
  if remove_space:
    # " ".join(text.strip().split()): strip, then each run of whitespace becomes one space
    # (with the origin of the run's first character).
    begin = len(current) - len(current.lstrip())
    stop = len(current.rstrip())
    current, origin = current[begin:stop], origin[begin:stop]
    current, origin = _substitute(current, origin, _SPACE_RUN, lambda _: " ")
  for pair in _QUOTES:  # str.replace: left to right, non-overlapping, one after the other
    current, origin = _substitute(current, origin, pair, lambda _: '"')
  if not keep_accents:
    current, origin = _substitute(current, origin, _NON_ASCII, _strip_accents)
  if do_lower_case:
    current, origin = lower_with_origin(current, origin)
  expected = normalize_text(
    text, do_lower_case=do_lower_case, remove_space=remove_space, keep_accents=keep_accents
  )
  if current != expected:
    raise RuntimeError(
      "character-level normalization disagrees with the tokenizer's for "
      f"{text[:80]!r}: {current[:80]!r} vs {expected[:80]!r}"
    )
  return current, np.asarray(origin, np.int64)


# ----------------------------------------------------------------- BERT's basic tokenization
# transformers' slow BertTokenizer (and the original tokenization.py), character classes read from
# Python's unicodedata as that code reads them. Each text is rewritten with str.translate tables
# built from its own distinct characters (classes cached per character), then split on spaces.

# CJK Unified Ideographs and their extensions and compatibility blocks (not Hangul or kana).
_CJK_RANGES = (
  (0x4E00, 0x9FFF),
  (0x3400, 0x4DBF),
  (0x20000, 0x2A6DF),
  (0x2A700, 0x2B73F),
  (0x2B740, 0x2B81F),
  (0x2B820, 0x2CEAF),
  (0xF900, 0xFAFF),
  (0x2F800, 0x2FA1F),
)


@functools.lru_cache(maxsize=1 << 16)
def _cleaned(ch: str) -> str | None:
  """BERT's _clean_text of one character: "" (dropped: NUL, U+FFFD, control and other C*
  categories but tab/newline/CR), " " (whitespace), or None (kept)."""
  cat = unicodedata.category(ch)
  if ch in "\x00\ufffd" or (cat.startswith("C") and ch not in "\t\n\r"):
    return ""
  if ch in " \t\n\r" or cat == "Zs":
    return " "
  return None


@functools.lru_cache(maxsize=1 << 16)
def _is_punctuation(ch: str) -> bool:
  # BERT treats every ASCII non-letter, non-digit as punctuation ("$", "^", "`" included).
  cp = ord(ch)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
  cp = ord(ch)
  return any(a <= cp <= b for a, b in _CJK_RANGES)


@functools.lru_cache(maxsize=1 << 16)
def _is_mark(ch: str) -> bool:
  return unicodedata.category(ch) == "Mn"


# Hangul jamo compose into syllables under NFC although each is a starter.
_JAMO_RANGES = ((0x1100, 0x11FF), (0xA960, 0xA97F), (0xD7B0, 0xD7FF))


@functools.lru_cache(maxsize=1 << 17)
def _one_pass(ch: str, tokenize_chinese_chars: bool) -> tuple[bool, str | None]:
  """(inert, replacement) of one character. Inert: NFC, NFD, lower-casing and accent stripping
  leave it alone and it combines with no neighbour, so a text of inert characters needs one
  translate table: `replacement` (dropped, a space, or set off by spaces: CJK, punctuation)."""
  cleaned = _cleaned(ch)
  if cleaned is not None:
    return True, cleaned
  cp = ord(ch)
  inert = (
    unicodedata.combining(ch) == 0
    and unicodedata.category(ch) != "Mn"
    and unicodedata.normalize("NFD", ch) == ch
    and unicodedata.normalize("NFC", ch) == ch
    and ch.lower() == ch
    and not any(a <= cp <= b for a, b in _JAMO_RANGES)
  )
  if (tokenize_chinese_chars and _is_cjk(ch)) or _is_punctuation(ch):
    return inert, " " + ch + " "
  return inert, None


# ASCII text needs one table: cleanup and punctuation (NFC and accents never change it).
_ASCII_TABLE = {
  cp: (" " + chr(cp) + " " if _is_punctuation(chr(cp)) else _cleaned(chr(cp)))
  for cp in range(128)
  if _is_punctuation(chr(cp)) or _cleaned(chr(cp)) is not None
}


def bert_words(
  text: str, do_lower_case: bool, strip_accents: bool | None, tokenize_chinese_chars: bool
) -> list[str]:
  """The words BERT's basic tokenization cuts `text` into (WordPiece then cuts each word).

  In transformers' BertTokenizer's order: lower-case (character by character), drop control
  characters and U+0000/U+FFFD, whitespace to spaces, spaces around CJK characters, NFC,
  accents stripped (NFD, Mn marks dropped) when strip_accents, or when lower-casing if it is
  None; split on whitespace and around each punctuation character.
  """
  if do_lower_case:
    text = lower(text)
  if text.isascii():
    return text.translate(_ASCII_TABLE).split()
  rules = [(ord(ch), _one_pass(ch, tokenize_chinese_chars)) for ch in set(text)]
  if all(inert for _, (inert, _) in rules):  # e.g. Chinese text: one table does it all
    return text.translate({cp: r for cp, (_, r) in rules if r is not None}).split()
  table = {}
  for ch in set(text):
    cleaned = _cleaned(ch)
    if cleaned is not None:
      table[ord(ch)] = cleaned
    elif tokenize_chinese_chars and _is_cjk(ch):
      table[ord(ch)] = " " + ch + " "
  text = unicodedata.normalize("NFC", text.translate(table))
  if do_lower_case:
    text = text.lower()
  if do_lower_case if strip_accents is None else strip_accents:
    text = unicodedata.normalize("NFD", text)
    text = text.translate({ord(ch): None for ch in set(text) if _is_mark(ch)})
  return text.translate(
    {ord(ch): " " + ch + " " for ch in set(text) if _is_punctuation(ch)}
  ).split()
