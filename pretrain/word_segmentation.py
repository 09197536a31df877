"""Chinese whole-word masking: which CJK tokens continue a segmented word.

A WordPiece vocabulary for Chinese (BERT's, Google's and brightmart's albert_zh) makes every CJK
character its own token, so "##" never marks a Chinese word's continuation and plain whole-word
masking masks single characters, as the original ALBERT does. With a word segmenter, each maximal
run of consecutive CJK-character tokens of a sentence is segmented into words (the run's characters
joined, as Chinese whole-word masking (Cui et al.; brightmart's create_pretraining_data.py) segments
the text), and every character after a word's first is flagged as continuing that word: n-gram
masking then counts and masks the word as one (`masking.mask_examples(..., continues_word=)`).
English and other pieces inside Chinese text keep WordPiece's "##" rule (the vocabulary's
`word_start_mask`); punctuation, [UNK] and non-CJK tokens end a run.

Segmenters are named (`SEGMENTERS`) so a config can carry them and worker processes rebuild them:
"jieba" (the `zh` extra, or `pip install jieba`; its default dictionary and HMM for unknown
words, which is deterministic).
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from albert_flax.install_hints import pip_install

Segmenter = Callable[[str], Sequence[str]]
SEGMENTERS = ("jieba",)


def _is_cjk_char(ch: str) -> bool:
  """Whether `ch` is in the CJK blocks BERT's tokenizer splits one by one (_is_chinese_char)."""
  cp = ord(ch)
  return (
    0x4E00 <= cp <= 0x9FFF
    or 0x3400 <= cp <= 0x4DBF
    or 0x20000 <= cp <= 0x2A6DF
    or 0x2A700 <= cp <= 0x2B73F
    or 0x2B740 <= cp <= 0x2B81F
    or 0x2B820 <= cp <= 0x2CEAF
    or 0xF900 <= cp <= 0xFAFF
    or 0x2F800 <= cp <= 0x2FA1F
  )


@functools.cache
def get_segmenter(name: str) -> Segmenter:
  """The segmenter called `name` (one of SEGMENTERS): text -> its words, in order."""
  if name != "jieba":
    raise ValueError(f"Unknown word_segmenter {name!r}; choose one of {SEGMENTERS} (or none)")
  try:
    import jieba
  except ImportError:
    raise ImportError(
      f"word_segmenter='jieba' needs jieba: `{pip_install('zh')}` (or `pip install jieba`)"
    ) from None
  jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading at INFO
  jieba.initialize()
  return functools.partial(jieba.lcut, HMM=True)


def check_segmenter(name: str | None) -> None:
  """Raise early (before any worker starts) if `name` is not a usable segmenter."""
  if name:
    get_segmenter(name)


# Per tokenizer: [vocab] the CJK character of each single-character CJK token, else "".
_CHAR_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cjk_char_table(tokenizer: Any) -> np.ndarray:
  """[vocab_size] object array: the character of each token that is one CJK character, else ""."""
  try:
    table = _CHAR_TABLES.get(tokenizer)
  except TypeError:  # not weak-referenceable: compute every time
    table = None
  if table is not None and len(table) == tokenizer.vocab_size:
    return table
  tokens = tokenizer.convert_ids_to_tokens(list(range(tokenizer.vocab_size)))
  table = np.array([t if len(t) == 1 and _is_cjk_char(t) else "" for t in tokens], dtype=object)
  try:
    _CHAR_TABLES[tokenizer] = table
  except TypeError:
    pass
  return table


def continuation_flags(
  tokens: np.ndarray, sentence_lengths: np.ndarray, tokenizer: Any, segmenter: str | Segmenter
) -> np.ndarray:
  """[T] bool over a flat token array: True where a CJK token continues a segmented word.

  Args:
    tokens: [T] int, the sentences' tokens one after the other.
    sentence_lengths: [num_sentences] int, summing to T (runs never cross a sentence).
    tokenizer: gives `vocab_size` and `convert_ids_to_tokens`.
    segmenter: a name in SEGMENTERS, or a function text -> words.
  """
  segment = get_segmenter(segmenter) if isinstance(segmenter, str) else segmenter
  tokens = np.asarray(tokens)
  chars = cjk_char_table(tokenizer)[tokens]
  is_cjk = chars != ""
  flags = np.zeros(len(tokens), bool)
  if not is_cjk.any():
    return flags
  # Runs of CJK tokens: starts where a CJK token follows a non-CJK token or a sentence boundary.
  sentence_start = np.zeros(len(tokens), bool)
  sentence_start[np.cumsum(sentence_lengths)[:-1]] = True
  sentence_start[0] = True
  prev_cjk = np.concatenate([[False], is_cjk[:-1]]) & ~sentence_start
  run_starts = np.nonzero(is_cjk & ~prev_cjk)[0]
  # A run ends at the first position past its start that is not a continuation of it.
  inside = is_cjk & prev_cjk
  next_break = np.nonzero(~np.concatenate([inside[1:], [False]]))[0]
  run_ends = next_break[np.searchsorted(next_break, run_starts)] + 1
  for start, end in zip(run_starts.tolist(), run_ends.tolist()):
    if end - start < 2:
      continue
    text = "".join(chars[start:end])
    position = start
    for word in segment(text):
      flags[position + 1 : position + len(word)] = True
      position += len(word)
    if position != end:
      raise ValueError(f"word segmenter returned words that do not add up to {text!r}")
  return flags
