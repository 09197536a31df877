"""N-gram whole-word masking as in the original ALBERT `create_masked_lm_predictions`, vectorized.

The original, per example: candidates are whole words (a SentencePiece piece starting with "▁"
begins a word, a WordPiece piece not starting with "##" does; Chinese words found by a segmenter are
whole words too, see `continues_word`; [CLS]/[SEP]/padding are never candidates); `num_to_predict =
min(max_predictions, max(1, round(len(tokens) * masked_lm_prob)))` tokens; the start words are
visited in random order, each draws an n-gram length n in 1..max_ngram with p(n) ∝ 1/n (6/11, 3/11,
2/11 for 3), restricted to the words left in the sequence; if the n words would exceed the token
budget the next shorter n-gram is tried, else the candidate is skipped; a candidate that overlaps
words already chosen is skipped. Each chosen token becomes [MASK] (80%), a random token (10%) or
stays unchanged (10%).

Here the same procedure runs for a whole array of examples at once: step k looks at every
example's k-th start word (a lazily drawn random permutation), with numpy over the examples that
still have budget left. The random replacement token is drawn from the non-special ids
[num_special_tokens, vocab_size) (the original drew from the whole vocabulary, control symbols
included).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class MaskedExamples:
  """Masked examples; N examples of length S with at most P predictions.

  Attributes:
    input_ids: [N, S] int32, the inputs with masked tokens replaced.
    masked_lm_positions: [N, P] int32, ascending positions of the predictions, 0-padded.
    masked_lm_ids: [N, P] int32, the original tokens there, 0-padded.
    masked_lm_weights: [N, P] float32, 1.0 for a prediction, 0.0 for padding.
    spans: [num_spans, 3] int, (example, first word, number of words) of every chosen n-gram, in
      the order chosen (for statistics and tests).
  """

  input_ids: np.ndarray
  masked_lm_positions: np.ndarray
  masked_lm_ids: np.ndarray
  masked_lm_weights: np.ndarray
  spans: np.ndarray


def ngram_probabilities(max_ngram: int) -> np.ndarray:
  """p(n) ∝ 1/n for n = 1..max_ngram: [max_ngram] float64 (6/11, 3/11, 2/11 for 3)."""
  p = 1.0 / np.arange(1, max_ngram + 1)
  return p / p.sum()


def mask_examples(
  input_ids: np.ndarray,
  lengths: np.ndarray,
  word_start_mask: np.ndarray,
  rng: np.random.Generator,
  *,
  masked_lm_prob: float = 0.15,
  max_predictions_per_seq: int = 20,
  max_ngram: int = 3,
  special_ids: tuple[int, ...] = (0, 2, 3),
  mask_id: int = 4,
  num_special_tokens: int = 5,
  continues_word: np.ndarray | None = None,
) -> MaskedExamples:
  """Chooses and replaces n-gram whole-word masks for a batch of packed examples.

  Args:
    input_ids: [N, S] int32 packed examples ([CLS] A [SEP] B [SEP] + padding).
    lengths: [N] int, the number of non-padding tokens of each example.
    word_start_mask: [vocab_size] bool, True where a piece begins a word. A token right after a
      special token also begins a word (a segment truncated at its front may start mid-word).
    rng: source of randomness.
    masked_lm_prob: fraction of each example's tokens (specials included, as the original) to mask.
    max_predictions_per_seq: P, the most predictions per example.
    max_ngram: the longest n-gram, in words.
    special_ids: ids that are never masked ([CLS], [SEP], padding).
    mask_id: id of [MASK].
    num_special_tokens: random replacements are drawn from [num_special_tokens, vocab_size).
    continues_word: [N, S] bool, optional: True where a token continues the word before it
      although its piece would begin one (a Chinese character inside a segmented word, see
      `pretrain.word_segmentation`); such a word is one candidate, masked whole.

  Returns:
    MaskedExamples; `input_ids` is a new array.
  """
  input_ids = np.asarray(input_ids)
  _check_arguments(input_ids, word_start_mask, masked_lm_prob, max_ngram, num_special_tokens)
  words = _words(input_ids, word_start_mask, special_ids, continues_word, max_ngram)
  budget = np.minimum(
    max_predictions_per_seq, np.maximum(1, np.rint(np.asarray(lengths) * masked_lm_prob))
  ).astype(np.int64)
  budget = np.where(words.num_words > 0, budget, 0)
  covered, spans = _choose_spans(words, budget, max_ngram, rng)
  rows, cols, positions, ids, weights = _predictions(
    input_ids, words, covered, max_predictions_per_seq
  )

  # --- 80% [MASK], 10% random token, 10% unchanged.
  out = input_ids.copy()
  u = rng.random(len(rows))
  random_ids = rng.integers(num_special_tokens, len(word_start_mask), len(rows))
  out[rows, cols] = np.where(u < 0.8, mask_id, np.where(u < 0.9, random_ids, input_ids[rows, cols]))
  return MaskedExamples(out, positions, ids, weights, spans)


def _check_arguments(
  input_ids: np.ndarray,
  word_start_mask: np.ndarray,
  masked_lm_prob: float,
  max_ngram: int,
  num_special_tokens: int,
) -> None:
  vocab_size = len(word_start_mask)
  if max_ngram < 1:
    raise ValueError(f"max_ngram must be >= 1, got {max_ngram}")
  if not 0.0 <= masked_lm_prob <= 1.0:
    raise ValueError(f"masked_lm_prob must be in [0, 1], got {masked_lm_prob}")
  if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
    raise ValueError(f"input ids outside the vocabulary [0, {vocab_size})")
  if vocab_size <= num_special_tokens:
    raise ValueError(f"vocab_size {vocab_size} leaves no non-special token for random replacement")


@dataclasses.dataclass
class _Words:
  """The whole words of N examples of length S (W: the most words of an example)."""

  candidate: np.ndarray  # [N, S] bool: a token that may be masked (not special)
  starts: np.ndarray  # [N, S] bool: a token that begins a word
  num_words: np.ndarray  # [N] int
  # [N, W + max_ngram + 1] int32: the candidate tokens before each word (the row's total past
  # its last word), so words [w, w + n) hold word_cum[w + n] - word_cum[w] tokens.
  word_cum: np.ndarray
  max_words: int  # W


def _words(
  input_ids: np.ndarray,
  word_start_mask: np.ndarray,
  special_ids: tuple[int, ...],
  continues_word: np.ndarray | None,
  max_ngram: int,
) -> _Words:
  """Candidates are the non-special tokens; a word starts at a word-start piece (unless
  `continues_word` says otherwise) or right after a non-candidate."""
  n_ex = input_ids.shape[0]
  # One table lookup gives both (0 special, 1 start, 2 continuation).
  code = np.where(word_start_mask, 1, 2).astype(np.int8)
  code[np.asarray(special_ids)] = 0
  code = code[input_ids]
  cand = code > 0
  prev_cand = np.zeros_like(cand)
  prev_cand[:, 1:] = cand[:, :-1]
  begins = code == 1
  if continues_word is not None:
    if np.shape(continues_word) != input_ids.shape:
      raise ValueError(
        f"continues_word has shape {np.shape(continues_word)}, input_ids {input_ids.shape}"
      )
    begins &= ~np.asarray(continues_word, bool)
  starts = cand & (begins | ~prev_cand)
  num_words = starts.sum(axis=1)  # [N]
  max_words = int(num_words.max()) if n_ex else 0
  # cand_before[r, j]: candidate tokens before position j. Words partition the candidates in
  # order, so word_cum[r, w] is cand_before at word w's start.
  cand_before = np.cumsum(cand, axis=1, dtype=np.int32) - cand
  word_cum = np.repeat(cand.sum(axis=1, dtype=np.int32)[:, None], max_words + max_ngram + 1, axis=1)
  s_rows, s_cols = np.nonzero(starts)
  row_first = np.zeros(n_ex + 1, np.int64)
  np.cumsum(num_words, out=row_first[1:])
  s_rank = np.arange(len(s_rows)) - row_first[s_rows]
  word_cum[s_rows, s_rank] = cand_before[s_rows, s_cols]
  return _Words(cand, starts, num_words, word_cum, max_words)


def _choose_spans(
  words: _Words, budget: np.ndarray, max_ngram: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """The original's visit of the start words in random order, each drawing an n-gram length,
  for every example at once. Returns (covered [N, W + max_ngram] bool: the chosen words, spans
  [num_spans, 3]: (example, first word, words) in the order chosen)."""
  num_words, word_cum, max_words = words.num_words, words.word_cum, words.max_words
  n_ex = len(num_words)
  # Start words are visited in a random order: a Fisher-Yates shuffle run lazily, one step per
  # visit, so only the visited prefix of each example's permutation is ever drawn.
  perm = np.repeat(np.arange(max_words, dtype=np.int32)[None, :], n_ex, axis=0)
  # Cumulative p(n) restricted to n <= m words, for m = 1..max_ngram: [max_ngram, max_ngram - 1].
  cdf = np.ones((max_ngram, max(max_ngram - 1, 1)))
  for m in range(1, max_ngram + 1):
    cdf[m - 1, : m - 1] = np.cumsum(ngram_probabilities(m))[:-1]
  m_range = np.arange(1, max_ngram + 1)[None, :]

  covered = np.zeros((n_ex, max_words + max_ngram), bool)
  count = np.zeros(n_ex, np.int64)
  spans = []
  active = np.nonzero(count < budget)[0]
  for k in range(max_words):
    active = active[(count[active] < budget[active]) & (k < num_words[active])]
    if not len(active):
      break
    # Visit a uniformly chosen word among those not visited yet (positions k.. of the permutation).
    j = k + (rng.random(len(active)) * (num_words[active] - k)).astype(np.int64)
    w = perm[active, j]
    perm[active, j] = perm[active, k]
    perm[active, k] = w
    left = np.minimum(num_words[active] - w, max_ngram)
    u = rng.random(len(active))
    n = 1 + (u[:, None] >= cdf[left - 1]).sum(axis=1)
    # Largest n' <= n whose tokens fit the budget (token counts grow with n').
    room = (budget - count)[active]
    tokens_m = word_cum[active[:, None], w[:, None] + m_range] - word_cum[active, w][:, None]
    n = ((tokens_m <= room[:, None]) & (m_range <= n[:, None])).sum(axis=1)
    hit = (covered[active[:, None], w[:, None] + m_range - 1] & (m_range <= n[:, None])).any(axis=1)
    ok = (n > 0) & ~hit
    r, w, n = active[ok], w[ok], n[ok]
    for i in range(max_ngram):
      sel = i < n
      covered[r[sel], w[sel] + i] = True
    count[r] += word_cum[r, w + n] - word_cum[r, w]
    spans.append(np.stack([r, w, n], axis=1))
  return covered, np.concatenate(spans) if spans else np.zeros((0, 3), np.int64)


def _predictions(
  input_ids: np.ndarray, words: _Words, covered: np.ndarray, max_predictions_per_seq: int
) -> tuple[np.ndarray, ...]:
  """The tokens of the chosen words, in position order: (rows, cols) of each, and the
  masked_lm_positions, masked_lm_ids, masked_lm_weights [N, P]."""
  n_ex = input_ids.shape[0]
  word_of_token = np.cumsum(words.starts, axis=1, dtype=np.int32) - 1
  chosen = words.candidate & np.take_along_axis(covered, np.maximum(word_of_token, 0), axis=1)
  rows, cols = np.nonzero(chosen)
  row_first = np.zeros(n_ex + 1, np.int64)
  np.cumsum(np.bincount(rows, minlength=n_ex), out=row_first[1:])
  slot = np.arange(len(rows)) - row_first[rows]
  positions = np.zeros((n_ex, max_predictions_per_seq), np.int32)
  ids = np.zeros((n_ex, max_predictions_per_seq), np.int32)
  weights = np.zeros((n_ex, max_predictions_per_seq), np.float32)
  positions[rows, slot] = cols
  ids[rows, slot] = input_ids[rows, cols]
  weights[rows, slot] = 1.0
  return rows, cols, positions, ids, weights
