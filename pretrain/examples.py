"""From a window of documents to packed, masked pretraining examples (pure, picklable work).

`tokenize_documents` turns documents (lists of sentences) into one flat token array;
`make_examples` makes the sentence pairs (sentence-order pairs, `pretrain.sop`, or BERT's
next-sentence pairs, `pretrain.nsp`: `ExampleConfig.sentence_pairs`), shuffles them, packs them
and masks them. Both are
deterministic functions of their inputs and a key, which is what makes the pipeline reproducible
and resumable regardless of how many worker processes run them.

Examples are dicts of numpy arrays over N examples:
  input_ids [N, S] int32, token_type_ids [N, S] int32, length [N] int32 (non-padding tokens),
  masked_lm_positions [N, P] int32, masked_lm_ids [N, P] int32, masked_lm_weights [N, P] float32,
  sentence_order_label [N] int32: the pair's label, whichever the kind; 0 = in order / B is the
    next segment, 1 = swapped / B is from another document (transformers' `sentence_order_label`
    and `next_sentence_label`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from pretrain import masking, nsp, sop
from pretrain.word_segmentation import SEGMENTERS, continuation_flags

EXAMPLE_KEYS = (
  "input_ids",
  "token_type_ids",
  "length",
  "masked_lm_positions",
  "masked_lm_ids",
  "masked_lm_weights",
  "sentence_order_label",
)


# ExampleConfig.sentence_pairs -> the function making that kind of pair.
PAIR_MAKERS = {"sop": sop.create_pairs, "nsp": nsp.create_pairs}

# pair_examples' per-token word flags for the masking step (not a batch field).
CONTINUES_WORD = "continues_word"


@dataclasses.dataclass(frozen=True)
class ExampleConfig:
  """How examples are made (the original create_pretraining_data.py flags)."""

  max_seq_length: int = 512
  max_predictions_per_seq: int = 20
  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1
  max_ngram: int = 3
  # Chinese whole-word masking: a name in word_segmentation.SEGMENTERS, or None (every CJK
  # character its own word, as the original).
  word_segmenter: str | None = None
  # "sop": sentence-order pairs (ALBERT); "nsp": next-sentence pairs (BERT), see PAIR_MAKERS.
  sentence_pairs: str = "sop"

  def __post_init__(self):
    if self.sentence_pairs not in PAIR_MAKERS:
      raise ValueError(
        f"sentence_pairs must be one of {sorted(PAIR_MAKERS)}, got {self.sentence_pairs!r}"
      )
    if not isinstance(self.max_seq_length, int) or self.max_seq_length < 5:
      raise ValueError(f"max_seq_length must be an int >= 5, got {self.max_seq_length!r}")
    if not isinstance(self.max_predictions_per_seq, int) or self.max_predictions_per_seq < 1:
      raise ValueError(
        f"max_predictions_per_seq must be an int >= 1, got {self.max_predictions_per_seq!r}"
      )
    if not 0.0 < self.masked_lm_prob <= 1.0:
      raise ValueError(f"masked_lm_prob must be in (0, 1], got {self.masked_lm_prob}")
    if not 0.0 <= self.short_seq_prob <= 1.0:
      raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
    if not isinstance(self.max_ngram, int) or self.max_ngram < 1:
      raise ValueError(f"max_ngram must be an int >= 1, got {self.max_ngram!r}")
    if self.word_segmenter is not None and self.word_segmenter not in SEGMENTERS:
      raise ValueError(
        f"word_segmenter must be one of {SEGMENTERS} or None, got {self.word_segmenter!r}"
      )


@dataclasses.dataclass
class Tokenized:
  """Documents as one flat token array.

  tokens: [T] int32; sentence_lengths: [num_sentences] int64 (all >= 1, documents in order);
  doc_num_sentences: [num_docs] int64.
  """

  tokens: np.ndarray
  sentence_lengths: np.ndarray
  doc_num_sentences: np.ndarray


def tokenize_documents(docs: Sequence[Sequence[str]], tokenizer: Any) -> Tokenized:
  """Tokenizes all sentences of `docs` in one batch call; sentences with no tokens are dropped."""
  sentences = [s for d in docs for s in d]
  ids = tokenizer.encode_as_ids(sentences) if sentences else []
  lengths = np.fromiter(map(len, ids), np.int64, len(ids))
  tokens = np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum()))
  doc_of_sentence = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
  keep = lengths > 0
  doc_num = np.bincount(doc_of_sentence[keep], minlength=len(docs))
  return Tokenized(tokens, lengths[keep], doc_num)


def make_examples(
  tok: Tokenized, cfg: ExampleConfig, tokenizer: Any, key: Sequence[int], mask: bool = True
) -> dict[str, np.ndarray]:
  """Sentence pairs of the tokenized documents, shuffled, packed and (if `mask`) masked.

  Args:
    tok: the tokenized documents.
    cfg: how to make examples.
    tokenizer: gives the special ids, `vocab_size` and `word_start_mask`.
    key: ints seeding this call's randomness (e.g. seed, process, epoch, window).
    mask: choose masks (else the masked_lm_* arrays are zeros and input_ids unmasked).

  Returns:
    The examples dict described in the module docstring.
  """
  rng = np.random.default_rng([int(k) for k in key])
  out = pair_examples(tok, cfg, tokenizer, rng)
  p = cfg.max_predictions_per_seq
  continues_word = out.pop(CONTINUES_WORD, None)
  if mask:
    m = mask_with_tokenizer(out["input_ids"], out["length"], tokenizer, cfg, rng, continues_word)
    out.update(
      input_ids=m.input_ids,
      masked_lm_positions=m.masked_lm_positions,
      masked_lm_ids=m.masked_lm_ids,
      masked_lm_weights=m.masked_lm_weights,
    )
  else:
    out.update(
      masked_lm_positions=np.zeros((num_examples(out), p), np.int32),
      masked_lm_ids=np.zeros((num_examples(out), p), np.int32),
      masked_lm_weights=np.zeros((num_examples(out), p), np.float32),
    )
  return out


def pair_examples(
  tok: Tokenized, cfg: ExampleConfig, tokenizer: Any, rng: np.random.Generator
) -> dict[str, np.ndarray]:
  """Sentence pairs (`cfg.sentence_pairs`) of the tokenized documents, shuffled and packed, not
  masked.

  Returns:
    input_ids, token_type_ids [N, S] int32, length [N] int32, sentence_order_label [N] int32;
    with `cfg.word_segmenter`, also CONTINUES_WORD [N, S] bool (the token continues a segmented
    word: the masking step takes it, see `pretrain.word_segmentation`).
  """
  pairs = PAIR_MAKERS[cfg.sentence_pairs](
    tok.sentence_lengths, tok.doc_num_sentences, cfg.max_seq_length, cfg.short_seq_prob, rng
  )
  pairs = pairs.take(rng.permutation(len(pairs)))
  input_ids, token_type_ids, length = sop.pack_pairs(
    tok.tokens,
    pairs,
    cfg.max_seq_length,
    tokenizer.cls_token_id,
    tokenizer.sep_token_id,
    tokenizer.pad_token_id,
  )
  out = {
    "input_ids": input_ids,
    "token_type_ids": token_type_ids,
    "length": length,
    "sentence_order_label": pairs.label.astype(np.int32),
  }
  if cfg.word_segmenter is not None:
    flags = continuation_flags(tok.tokens, tok.sentence_lengths, tokenizer, cfg.word_segmenter)
    # Packed exactly as the tokens are (specials and padding: no flag).
    packed = sop.pack_pairs(flags.astype(np.int32), pairs, cfg.max_seq_length, 0, 0, 0)[0]
    out[CONTINUES_WORD] = packed.astype(bool)
  return out


def mask_with_tokenizer(
  input_ids: np.ndarray,
  length: np.ndarray,
  tokenizer: Any,
  cfg: ExampleConfig,
  rng: np.random.Generator,
  continues_word: np.ndarray | None = None,
) -> masking.MaskedExamples:
  """`masking.mask_examples` with the tokenizer's special ids and word starts ([N, S] inputs;
  `continues_word` [N, S]: segmented Chinese words, see `pretrain.word_segmentation`)."""
  return masking.mask_examples(
    input_ids,
    length,
    tokenizer.word_start_mask,
    rng,
    masked_lm_prob=cfg.masked_lm_prob,
    max_predictions_per_seq=cfg.max_predictions_per_seq,
    max_ngram=cfg.max_ngram,
    special_ids=(tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id),
    mask_id=tokenizer.mask_token_id,
    num_special_tokens=_num_special(tokenizer),
    continues_word=continues_word,
  )


def _num_special(tokenizer: Any) -> int:
  # Random replacements avoid the special pieces, which ALBERT's vocabulary puts first (0..4).
  return 1 + max(
    tokenizer.pad_token_id,
    tokenizer.unk_token_id,
    tokenizer.cls_token_id,
    tokenizer.sep_token_id,
    tokenizer.mask_token_id,
  )


def concat_examples(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Concatenates example dicts along the example axis."""
  return {k: np.concatenate([p[k] for p in parts]) for k in EXAMPLE_KEYS}


def num_examples(ex: dict[str, np.ndarray]) -> int:
  return len(ex["sentence_order_label"])
