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
