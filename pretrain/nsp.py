"""Next-sentence pairs, as BERT's `create_pretraining_data.py` makes them (the `sentence_loss="nsp"`
baseline of the ALBERT paper's Table 5).

Per document, chunks are cut as for sentence-order pairs (`pretrain.sop`: the same target
lengths, the same chunks of at least two sentences) and segment A is the chunk's first k
sentences. Then with probability 1/2 B is the rest of the chunk (label 0: B is A's true
continuation); otherwise (label 1) B is a random run of sentences of ANOTHER document, starting at a
random sentence of it and long enough to fill the example, and, as BERT does, A's own unused
continuation is put back (the next chunk starts right after A). The pair is then truncated as the
original `truncate_seq_pair` does.

BERT draws the other document from the whole corpus held in memory; here it is drawn from the
documents of the same window (`shuffle_buffer` documents: what the pipeline holds), with the
window's random stream, so the pairs are a pure function of the window and its key: a resumed run,
or another number of workers, sees the same pairs. A window with fewer than two non-empty
documents has no other document to draw from and makes no pairs.

Label convention (transformers' `BertForPreTraining(next_sentence_label=...)`): 0 = B continues A,
1 = B is random. Pairs are `pretrain.sop.Pairs` (first = A, second = B), packed by `sop.pack_pairs`.
"""

from __future__ import annotations

import numpy as np

from pretrain import sop


def create_pairs(
  sentence_lengths: np.ndarray,
  doc_num_sentences: np.ndarray,
  max_seq_length: int,
  short_seq_prob: float,
  rng: np.random.Generator,
) -> sop.Pairs:
  """Makes the next-sentence pairs of a list of tokenized documents (a window).

  Args: as `pretrain.sop.create_pairs` (sentence_lengths [num_sentences], doc_num_sentences
    [num_docs]).

  Returns:
    Pairs with first = A, second = B, label 1 where B comes from another document; truncated so
    that first_len + second_len <= max_seq_length - 3, both lengths >= 1.
  """
  sentence_lengths = sop.check_lengths(max_seq_length, sentence_lengths)
  doc_num = np.asarray(doc_num_sentences, np.int64)
  max_num_tokens = max_seq_length - 3
  offsets = sop.sentence_offsets(sentence_lengths)
  doc_first = np.concatenate([[0], np.cumsum(doc_num)])  # first sentence of each document
  others = np.flatnonzero(doc_num > 0)  # documents a random B can come from
  rows: list[tuple[int, int, int, int, int]] = []  # (a_start, a_len, b_start, b_len, label)
  if len(others) < 2:
    return _pairs(rows, max_num_tokens, rng)
  targets = sop.document_targets(offsets, doc_num, max_num_tokens, short_seq_prob, rng)
  for d, (doc, target) in enumerate(targets):
    n, s = len(doc) - 1, 0
    while s < n:
      e = sop.chunk_end(doc, s, target, n)
      if e - s < 2:
        s = e
        continue
      k = int(rng.integers(1, e - s))  # A = k sentences, k in [1, len - 1].
      a_start, a_len = int(doc[s]), int(doc[s + k] - doc[s])
      if rng.random() < 0.5:
        # Another document: uniform over the window's non-empty documents other than d.
        j = int(rng.integers(len(others) - 1))
        j += j >= int(np.searchsorted(others, d))
        o = int(others[j])
        other = offsets[doc_first[o] : doc_first[o] + doc_num[o] + 1]
        first = int(rng.integers(doc_num[o]))
        end = sop.chunk_end(other, first, max(target - a_len, 1), int(doc_num[o]))
        rows.append((a_start, a_len, int(other[first]), int(other[end] - other[first]), 1))
        s += k  # BERT puts the unused segments back: they start the next chunk.
      else:
        rows.append((a_start, a_len, int(doc[s + k]), int(doc[e] - doc[s + k]), 0))
        s = e
  return _pairs(rows, max_num_tokens, rng)


def _pairs(rows: list, max_num_tokens: int, rng: np.random.Generator) -> sop.Pairs:
  a_start, a_len, b_start, b_len, label = np.asarray(rows, np.int64).reshape(-1, 5).T
  a_start, a_len, b_start, b_len = sop.truncate_pairs(
    a_start, a_len, b_start, b_len, max_num_tokens, rng
  )
  return sop.Pairs(a_start, a_len, b_start, b_len, label.astype(np.int32))
