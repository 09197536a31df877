"""Sentence-order pairs, as the original ALBERT `create_pretraining_data.py` makes them.

Per document: a target length of `max_seq_length - 3` tokens (with probability `short_seq_prob` a
random length in [2, max]); sentences are accumulated into a chunk until the target is reached (or
the document ends); segment A is the chunk's first k sentences (k uniform in [1, len - 1]), B the
rest; the pair is swapped with probability 1/2 (label 1 = swapped); then it is truncated to fit as
the original `truncate_seq_pair` does. Never a random-document negative: the original falls back
to one for single-sentence chunks, which are dropped here instead.

Segments are contiguous runs of one tokenized document, so a pair is four integers (start and
length of both segments in a flat token array) plus its label; `pack_pairs` turns them into the
`[CLS] A [SEP] B [SEP]` layout with right padding, vectorized over the whole window. BERT's
next-sentence pairs (`pretrain.nsp`) are Pairs too, and are packed by the same function.

Label convention (both kinds, as transformers' `AlbertForPreTraining(sentence_order_label=...)`
and `BertForPreTraining(next_sentence_label=...)`): 0 = the segments are in their order / B is A's
true continuation, 1 = swapped / B is a random segment of another document.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Pairs:
  """Sentence-order pairs over a flat token array; every field has shape [num_pairs].

  `first_*` is the segment placed first (after [CLS]), `second_*` the one after the first [SEP]:
  for label 1 (swapped) `first` is the document's later segment.
  """

  first_start: np.ndarray
  first_len: np.ndarray
  second_start: np.ndarray
  second_len: np.ndarray
  label: np.ndarray

  def __len__(self) -> int:
    return len(self.label)

  def take(self, index: np.ndarray) -> Pairs:
    return Pairs(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


def create_pairs(
  sentence_lengths: np.ndarray,
  doc_num_sentences: np.ndarray,
  max_seq_length: int,
  short_seq_prob: float,
  rng: np.random.Generator,
) -> Pairs:
  """Makes the sentence-order pairs of a list of tokenized documents.

  Args:
    sentence_lengths: [num_sentences] int, token count of each sentence (all >= 1), documents one
      after the other; the flat token array holds the sentences in this order.
    doc_num_sentences: [num_docs] int, how many of those sentences each document has.
    max_seq_length: length of a packed example, including [CLS] and two [SEP]s (>= 5).
    short_seq_prob: probability that a document's target length is random in [2, max].
    rng: source of randomness.

  Returns:
    Pairs, truncated so that first_len + second_len <= max_seq_length - 3, both lengths >= 1.
  """
  sentence_lengths = check_lengths(max_seq_length, sentence_lengths)
  max_num_tokens = max_seq_length - 3
  a_start, a_end, b_end = [], [], []
  for doc, target in document_targets(
    sentence_offsets(sentence_lengths), doc_num_sentences, max_num_tokens, short_seq_prob, rng
  ):
    n = len(doc) - 1
    s = 0
    while s < n:
      e = chunk_end(doc, s, target, n)
      if e - s >= 2:
        k = int(rng.integers(1, e - s))  # A = k sentences, k in [1, len - 1].
        a_start.append(doc[s])
        a_end.append(doc[s + k])
        b_end.append(doc[e])
      s = e
  a_start = np.asarray(a_start, np.int64)
  a_len = np.asarray(a_end, np.int64) - a_start
  b_start = a_start + a_len
  b_len = np.asarray(b_end, np.int64) - b_start
  label = (rng.random(len(a_start)) < 0.5).astype(np.int32)
  swap = label.astype(bool)
  first_start = np.where(swap, b_start, a_start)
  first_len = np.where(swap, b_len, a_len)
  second_start = np.where(swap, a_start, b_start)
  second_len = np.where(swap, a_len, b_len)
  first_start, first_len, second_start, second_len = truncate_pairs(
    first_start, first_len, second_start, second_len, max_num_tokens, rng
  )
  return Pairs(first_start, first_len, second_start, second_len, label)


def sentence_offsets(sentence_lengths: np.ndarray) -> np.ndarray:
  """[num_sentences + 1] token offset of every sentence start in the flat array, plus the end."""
  offsets = np.zeros(len(sentence_lengths) + 1, np.int64)
  np.cumsum(sentence_lengths, out=offsets[1:])
  return offsets


def document_targets(
  offsets: np.ndarray,
  doc_num_sentences: np.ndarray,
  max_num_tokens: int,
  short_seq_prob: float,
  rng: np.random.Generator,
):
  """Yields (the [n + 1] token offsets of each document's sentences, its target length): as the
  original, one target per document, random in [2, max] with probability `short_seq_prob`."""
  first_sentence = 0
  for n in np.asarray(doc_num_sentences).tolist():
    doc = offsets[first_sentence : first_sentence + n + 1]
    first_sentence += n
    target = max_num_tokens
    if rng.random() < short_seq_prob:
      target = int(rng.integers(2, max_num_tokens + 1))
    yield doc, target


def chunk_end(offsets: np.ndarray, start: int, target: int, last: int) -> int:
  """The end (a sentence index) of a chunk of a document's sentences from sentence `start`: the
  first sentence that brings it to `target` tokens, at least one sentence, at most `last`.
  offsets: the document's [n + 1] sentence offsets."""
  reach = int(np.searchsorted(offsets, offsets[start] + target, side="left"))
  return min(max(reach, start + 1), last)


def check_lengths(max_seq_length: int, sentence_lengths: np.ndarray) -> np.ndarray:
  """`sentence_lengths` as int64, after checking them and `max_seq_length` (both pair kinds)."""
  if max_seq_length < 5:
    raise ValueError(f"max_seq_length must be >= 5 ([CLS] a [SEP] b [SEP]), got {max_seq_length}")
  sentence_lengths = np.asarray(sentence_lengths, np.int64)
  if sentence_lengths.size and sentence_lengths.min() < 1:
    raise ValueError("sentence_lengths must all be >= 1 (drop empty sentences first)")
  return sentence_lengths


def truncate_pairs(
  first_start: np.ndarray,
  first_len: np.ndarray,
  second_start: np.ndarray,
  second_len: np.ndarray,
  max_num_tokens: int,
  rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The original `truncate_seq_pair` in closed form, for all pairs at once ([num_pairs] each).

  The original removes one token at a time from the longer segment (the second on a tie), from its
  front or back with probability 1/2 each, until the pair fits. So the longer segment first loses
  the length difference, then the second and first alternate; each segment's front removals are
  Binomial(removed, 1/2).
  """
  excess = np.maximum(first_len + second_len - max_num_tokens, 0)
  first_longer = first_len > second_len
  from_longer = np.minimum(excess, np.abs(first_len - second_len))
  rest = excess - from_longer
  cut_first = np.where(first_longer, from_longer, 0) + rest // 2
  cut_second = np.where(first_longer, 0, from_longer) + (rest + 1) // 2
  front_first = rng.binomial(cut_first, 0.5)
  front_second = rng.binomial(cut_second, 0.5)
  return (
    first_start + front_first,
    first_len - cut_first,
    second_start + front_second,
    second_len - cut_second,
  )


def pack_pairs(
  tokens: np.ndarray, pairs: Pairs, max_seq_length: int, cls_id: int, sep_id: int, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Lays pairs out as `[CLS] A [SEP] B [SEP]` + right padding.

  Args:
    tokens: [num_tokens] int32, the flat token array the pairs index.
    pairs: N pairs with first_len + second_len <= max_seq_length - 3.

  Returns:
    input_ids [N, S] int32, token_type_ids [N, S] int32 (0 for [CLS] A [SEP], 1 for B [SEP],
    0 on padding), lengths [N] int32 (number of non-padding tokens).
  """
  n = len(pairs)
  la = pairs.first_len[:, None]
  lb = pairs.second_len[:, None]
  j = np.arange(max_seq_length)[None, :]
  in_a = (j >= 1) & (j <= la)
  in_b = (j >= la + 2) & (j < la + 2 + lb)
  index = np.where(
    in_a,
    pairs.first_start[:, None] + j - 1,
    np.where(in_b, pairs.second_start[:, None] + j - la - 2, 0),
  )
  input_ids = np.where(in_a | in_b, tokens[index] if len(tokens) else 0, pad_id).astype(np.int32)
  length = (la + lb + 3)[:, 0]
  input_ids[:, 0] = cls_id
  rows = np.arange(n)
  input_ids[rows, la[:, 0] + 1] = sep_id
  input_ids[rows, length - 1] = sep_id
  token_type_ids = ((j >= la + 2) & (j < length[:, None])).astype(np.int32)
  return input_ids, token_type_ids, length.astype(np.int32)
