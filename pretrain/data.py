"""ALBERT pretraining examples: sentence-order pairs with n-gram whole-word masking, as batches.

    import albert_flax as af
    from pretrain import data
    tok = af.AlbertTokenizer("spiece.model")
    batches = data.make_pretraining_batches("corpus/*.txt", tok, batch_size=64,
                                            max_seq_length=512, max_predictions_per_seq=20, seed=0)
    batch = next(batches)          # dict of numpy arrays, see below
    state = batches.get_state()    # small JSON-serializable dict: save it with the checkpoint
    batches = data.make_pretraining_batches(..., state=state)   # or batches.set_state(state)

Sources (`files`): text files in the original format (one sentence per line, a blank line between
documents; a glob, comma-separated globs or a list); None / "builtin" for the built-in corpus (the
Python standard library's docstrings; "builtin:train" and "builtin:eval" hold out ~2% of its
documents for evaluation); `tfds_name=` for a tensorflow-datasets text data set; `static_shards=`
(or files ending in .array_record) for examples written by `python -m pretrain.create_data`.

Examples are made as the original ALBERT create_pretraining_data.py makes them (see
`pretrain/sop.py` and `pretrain/masking.py`), masked afresh each time they are seen (dynamic
masking) unless read from static shards. Each process reads a disjoint share of the documents
(`jax.process_index()` of `jax.process_count()` unless given); `batch_size` is the number of
examples per batch of this process. Documents are handled in windows of `shuffle_buffer`
documents (pairs are shuffled within a window; the file order is shuffled every epoch), so memory
does not grow with the corpus. Static shards are shuffled globally (a new permutation of all
records every epoch, process p taking every n-th). The pipeline runs on grain (see
`pretrain/pipeline.py`): `num_workers` are its `mp_prefetch` processes.

Batches: input_ids, attention_mask, token_type_ids [B, S] int32 (`[CLS] A [SEP] B [SEP]`, right
padding with id 0; token type 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`); masked_lm_positions,
masked_lm_ids [B, P] int32; masked_lm_weights [B, P] float32 (0 on padding predictions);
sentence_order_label [B] int32 (1 = the two segments are swapped).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np
from etils import epath

from pretrain import builtin_corpus, corpus, pipeline, shards, word_segmentation
from pretrain.examples import ExampleConfig
from pretrain.pipeline import BATCH_KEYS, PretrainingIterator

log = logging.getLogger(__name__)

__all__ = [
  "make_pretraining_batches",
  "PretrainingIterator",
  "ExampleConfig",
  "BATCH_KEYS",
  "make_source",
  "split_corpus",
  "load_tokenizer",
  "TextStream",
  "StaticStream",
]

DEFAULT_SHUFFLE_BUFFER_DOCS = 1024


# ----------------------------------------------------------------------------- streams


class TextStream:
  """Windows of `window_docs` documents of a source -> dynamically masked chunks (grain)."""

  def __init__(
    self,
    source: corpus.DocumentSource,
    tokenizer: Any,
    config: ExampleConfig,
    window_docs: int,
    seed: int,
    process_index: int,
    process_count: int,
    split: str | None = None,
    eval_fraction: float = corpus.DEFAULT_EVAL_FRACTION,
    num_epochs: int | None = None,
  ):
    if window_docs < 1:
      raise ValueError(f"shuffle_buffer must be >= 1 document, got {window_docs}")
    corpus.check_split(split)
    _check_vocab(tokenizer)
    self.source, self.window_docs, self.num_epochs = source, window_docs, num_epochs
    self.seed, self.process_index, self.process_count = seed, process_index, process_count
    self.split, self.eval_fraction = split, eval_fraction
    self.tokenizer, self.config = tokenizer, config
    self.name = source.name + (f" (split {split})" if split not in (None, "all") else "")

  def settings(self) -> str:
    return _digest(
      self.window_docs,
      _ConfigRepr(self.config),
      self.split,
      self.eval_fraction,
      self.tokenizer.vocab_size,
      type(self.source).__name__,
    )

  def windows(self, start: pipeline.Start = pipeline.Start()) -> pipeline.DocumentWindows:
    return pipeline.DocumentWindows(
      self.source,
      self.window_docs,
      self.seed,
      self.process_index,
      self.process_count,
      self.num_epochs,
      self.split,
      self.eval_fraction,
      start,
    )

  def dataset(self, start: pipeline.Start) -> grain.IterDataset:
    return (
      self.windows(start)
      .map(pipeline.MakePairs(self.tokenizer, self.config))
      .map(pipeline.MaskTokens(self.tokenizer, self.config))
    )

  def upgrade_state(self, state: dict) -> dict:
    # A state of the pipeline before grain: the same windows of the same documents, but pairs
    # and masks drawn from other random streams, so the examples after it are new ones.
    log.warning("data state of an older pipeline: resuming at its window with new masks")
    return state

  def close(self) -> None:
    pass


def _check_vocab(tokenizer: Any) -> None:
  missing = [
    a
    for a in (
      "encode_as_ids",
      "word_start_mask",
      "vocab_size",
      "pad_token_id",
      "cls_token_id",
      "sep_token_id",
      "mask_token_id",
    )
    if not hasattr(tokenizer, a)
  ]
  if missing:
    raise TypeError(
      f"tokenizer {tokenizer!r} lacks {missing}: pass an albert_flax AlbertTokenizer "
      "or the path of a SentencePiece model"
    )
  if len(tokenizer.word_start_mask) != tokenizer.vocab_size:
    raise ValueError("tokenizer.word_start_mask must have vocab_size entries")


class StaticStream:
  """Examples of static shards, globally shuffled every epoch, in chunks of `chunk_size`.

  Process p of n reads positions p, p + n, ... of each epoch's permutation of all records.
  """

  def __init__(
    self,
    files: str | Sequence[str],
    max_seq_length: int,
    max_predictions_per_seq: int,
    chunk_size: int,
    seed: int,
    process_index: int,
    process_count: int,
    num_epochs: int | None = None,
    sentence_pairs: str = "sop",
  ):
    self.source = shards.open_shards(files)
    self.name = shards.shards_name(self.source)
    info = shards.read_info(corpus.expand_files(files))
    written = (info or {}).get("sentence_pairs", "sop")  # shards before NSP hold SOP pairs
    if info is not None and written != sentence_pairs:
      raise ValueError(
        f"{self.name} hold {written!r} sentence pairs, but {sentence_pairs!r} pairs were asked "
        f"for: write shards with `python -m pretrain.create_data --sentence_pairs={sentence_pairs}`"
      )
    if info is not None and info.get("max_seq_length", 0) > max_seq_length:
      raise ValueError(
        f"{self.name} were written with max_seq_length={info['max_seq_length']}, "
        f"larger than the requested {max_seq_length}"
      )
    if len(self.source) < process_count:
      raise ValueError(
        f"{self.name}: {len(self.source)} examples cannot be shared among {process_count} processes"
      )
    self.max_seq_length, self.max_predictions_per_seq = max_seq_length, max_predictions_per_seq
    self.chunk_size, self.num_epochs = chunk_size, num_epochs
    self.seed, self.process_index, self.process_count = seed, process_index, process_count

  def settings(self) -> str:
    return _digest(
      "global-shuffle", self.max_seq_length, self.max_predictions_per_seq, len(self.source)
    )

  def dataset(self, start: pipeline.Start) -> grain.IterDataset:
    return pipeline.static_chunks(
      self.source,
      self.name,
      self.max_seq_length,
      self.max_predictions_per_seq,
      self.chunk_size,
      self.seed,
      self.process_index,
      self.process_count,
      self.num_epochs,
      start,
    )

  def upgrade_state(self, state: dict) -> dict:
    # Blocks of the pipeline before grain cannot be mapped onto the global shuffle: restart the
    # saved epoch (its examples are seen again in a new order).
    epoch = int(state["epoch"])
    log.warning("static-shard data state of an older pipeline: restarting epoch %d", epoch)
    first = -(-(epoch * len(self.source) - self.process_index) // self.process_count)
    return {"epoch": epoch, "window": 0, "position": {"example": max(first, 0)}, "offset": 0}

  def close(self) -> None:
    pass


class _ConfigRepr:
  """An ExampleConfig's repr without `sentence_pairs` when it is the default "sop": the digest of
  a sentence-order stream stays the one saved before NSP pairs existed, so those runs resume."""

  def __init__(self, config: ExampleConfig):
    self.config = config

  def __repr__(self) -> str:
    c = self.config
    if c.sentence_pairs != "sop":
      return repr(c)
    fields = (f.name for f in dataclasses.fields(c) if f.name != "sentence_pairs")
    return f"{type(c).__qualname__}({', '.join(f'{n}={getattr(c, n)!r}' for n in fields)})"


def _digest(*parts: Any) -> str:
  return f"{zlib.crc32(repr(parts).encode()):08x}"


# ----------------------------------------------------------------------------- entry points


def load_tokenizer(tokenizer: Any, do_lower_case: bool = True) -> Any:
  """The tokenizer of a path (a spiece.model or a WordPiece vocab.txt: `af.load_tokenizer`), or
  the tokenizer as given."""
  if isinstance(tokenizer, (str, os.PathLike)):
    from albert_flax.tokenizer_loading import load_tokenizer

    return load_tokenizer(tokenizer, do_lower_case=do_lower_case)
  return tokenizer


def make_source(
  files: str | Sequence[str] | None,
  *,
  tfds_name: str | None = None,
  tfds_split: str = "train",
  tfds_data_dir: str | None = None,
  tfds_field: str = "text",
  tfds_download: bool = False,
  cache_dir: str | None = None,
  shard_by: str = "auto",
) -> tuple[corpus.DocumentSource, str | None]:
  """The document source of `files` / `tfds_name`, and the split a "builtin:<split>" asks for."""
  if tfds_name is not None:
    if files not in (None, "", []):
      raise ValueError(f"give either files or tfds_name, not both (files={files!r})")
    return corpus.TfdsSource(tfds_name, tfds_split, tfds_data_dir, tfds_field, tfds_download), None
  if files is None or (isinstance(files, str) and files.split(":")[0] == "builtin"):
    split = files.split(":", 1)[1] if isinstance(files, str) and ":" in files else None
    corpus.check_split(split)
    return builtin_corpus.builtin_source(cache_dir), split
  return corpus.TextFileSource(files, shard_by=shard_by), None


def is_static(files: Any) -> bool:
  """Whether `files` names static shards (.array_record) rather than text."""
  names = [files] if isinstance(files, str) else list(files or [])
  return bool(names) and all(
    str(n).endswith(".array_record") or str(n).endswith(".array_record*") for n in names
  )


def make_pretraining_batches(
  files: str | Sequence[str] | None,
  tokenizer: Any,
  batch_size: int,
  max_seq_length: int,
  max_predictions_per_seq: int,
  seed: int = 0,
  *,
  masked_lm_prob: float = 0.15,
  short_seq_prob: float = 0.1,
  max_ngram: int = 3,
  num_epochs: int | None = None,
  shuffle_buffer: int | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
  num_workers: int = 0,
  split: str | None = None,
  eval_fraction: float = corpus.DEFAULT_EVAL_FRACTION,
  tfds_name: str | None = None,
  tfds_split: str = "train",
  tfds_data_dir: str | None = None,
  tfds_field: str = "text",
  tfds_download: bool = False,
  static_shards: str | Sequence[str] | None = None,
  cache_dir: str | None = None,
  shard_by: str = "auto",
  drop_remainder: bool = True,
  do_lower_case: bool = True,
  word_segmenter: str | None = None,
  state: dict | None = None,
  **example_options: Any,
) -> PretrainingIterator:
  """Batches of ALBERT pretraining examples (SOP pairs, n-gram masking); see the module docstring.

  Args:
    files: text files (glob, comma-separated globs or list), None/"builtin"/"builtin:train"/
      "builtin:eval" for the built-in corpus, or .array_record static shards.
    tokenizer: an `albert_flax.AlbertTokenizer` or the path of its SentencePiece model (unused for
      static shards, may be None there).
    batch_size: examples per batch of this process (its share of the global batch).
    max_seq_length: S, the padded length, [CLS] and [SEP]s included.
    max_predictions_per_seq: P, masked positions per example (padded with weight 0).
    seed: the same seed and options give the same batches.
    masked_lm_prob, short_seq_prob, max_ngram: as the original flags (0.15, 0.1, 3).
    num_epochs: passes over the data; None repeats forever. Each pass makes new pairs and masks.
    shuffle_buffer: documents per window (text; default 1024): memory is proportional to it.
      Static shards are shuffled globally and ignore it.
    process_index, process_count: this process's share (default: jax.process_index()/count()).
    num_workers: grain `mp_prefetch` worker processes making examples (0: in this process).
      Results and states do not depend on it. Workers are spawned: call from under
      `if __name__ == "__main__":` in scripts.
    split: None/"all", "train" or "eval": keep all documents, or hold out the `eval_fraction`
      of them chosen by a hash of their first sentence (for any text source). Static shards
      accept None/"all"/"train" (all their examples).
    tfds_name, tfds_split, tfds_data_dir, tfds_field, tfds_download: read a tensorflow-datasets
      text data set instead of files (it must be prepared unless tfds_download=True).
    static_shards: glob/list of ArrayRecord shards written by `python -m pretrain.create_data`.
    cache_dir: where the built-in corpus is cached.
    shard_by: "auto", "file" or "document": how text files are shared among processes.
    drop_remainder: drop the last incomplete batch (only happens with num_epochs set).
    do_lower_case: used when `tokenizer` is a path.
    word_segmenter: Chinese whole-word masking with a WordPiece tokenizer: "jieba" segments runs
      of CJK characters into words, each masked whole; None: every CJK character is a word, as
      the original (see `pretrain.word_segmentation`).
    state: a `get_state()` result to resume from.
    **example_options: further fields of `ExampleConfig` (how examples are made), e.g.
      sentence_pairs="nsp" for BERT's next-sentence pairs (static shards must have been written
      with the same kind).

  Returns:
    A `PretrainingIterator` (iterator of batch dicts with get_state/set_state/close).
  """
  if process_index is None or process_count is None:
    import jax  # Only for the default share; tests and tools pass both.

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
      f"need 0 <= process_index < process_count, got {process_index}, {process_count}"
    )
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative int, got {seed!r}")
  if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs < 1):
    raise ValueError(f"num_epochs must be None (repeat forever) or an int >= 1, got {num_epochs!r}")
  config = ExampleConfig(
    max_seq_length,
    max_predictions_per_seq,
    masked_lm_prob,
    short_seq_prob,
    max_ngram,
    word_segmenter=word_segmenter or None,
    **example_options,
  )
  word_segmentation.check_segmenter(config.word_segmenter)
  if static_shards is None and files is not None and is_static(files):
    static_shards, files = files, None
  if static_shards is not None:
    if files is not None or tfds_name is not None:
      raise ValueError("static_shards replaces files/tfds_name: give only one source")
    if split == "eval":
      # Shards hold examples, not documents: nothing is held out in them (create_data --split
      # writes train-only and eval-only shards). split="train" means all of their examples.
      raise ValueError(
        "split='eval' does not apply to static shards: write held-out shards "
        "with `python -m pretrain.create_data --split=eval` and read those"
      )
    stream: TextStream | StaticStream = StaticStream(
      static_shards,
      max_seq_length,
      max_predictions_per_seq,
      batch_size,
      int(seed),
      process_index,
      process_count,
      num_epochs,
      config.sentence_pairs,
    )
  else:
    tokenizer = load_tokenizer(tokenizer, do_lower_case)
    source, builtin_split = make_source(
      files,
      tfds_name=tfds_name,
      tfds_split=tfds_split,
      tfds_data_dir=tfds_data_dir,
      tfds_field=tfds_field,
      tfds_download=tfds_download,
      cache_dir=cache_dir,
      shard_by=shard_by,
    )
    if builtin_split is not None and split not in (None, builtin_split):
      raise ValueError(f"files={files!r} asks for split {builtin_split!r}, but split={split!r}")
    stream = TextStream(
      source,
      tokenizer,
      config,
      shuffle_buffer or DEFAULT_SHUFFLE_BUFFER_DOCS,
      int(seed),
      process_index,
      process_count,
      split or builtin_split,
      eval_fraction,
      num_epochs,
    )
  return PretrainingIterator(
    stream,
    batch_size,
    drop_remainder=drop_remainder,
    num_workers=num_workers,
    state=state,
  )


def split_corpus(
  files: str | Sequence[str] | None,
  output_dir: str,
  eval_fraction: float = corpus.DEFAULT_EVAL_FRACTION,
  cache_dir: str | None = None,
) -> tuple[str, str]:
  """Writes `train.txt` and `eval.txt` (original format) holding out `eval_fraction` of documents.

  The rule is the one of `split="eval"` (a hash of each document's first sentence), streamed, so
  `make_pretraining_batches(files, split="eval")` and the written `eval.txt` agree.

  Returns:
    (train path, eval path).
  """
  source, _ = make_source(files, cache_dir=cache_dir)
  output = epath.Path(output_dir)
  output.mkdir(parents=True, exist_ok=True)
  paths = (str(output / "train.txt"), str(output / "eval.txt"))
  counts = [0, 0]
  with epath.Path(paths[0]).open("w") as train, epath.Path(paths[1]).open("w") as ev:
    for doc, _ in source.documents(0, None, 0, 1, seed=0):
      held_out = corpus.in_eval_split(doc[0], eval_fraction)
      (ev if held_out else train).write("\n".join(doc) + "\n\n")
      counts[held_out] += 1
  for path, count in zip(paths, counts):
    if count == 0:
      raise ValueError(
        f"split_corpus: {path!r} would be empty ({counts[0]} train and {counts[1]} "
        f"eval documents from {source.name}); change eval_fraction"
      )
  return paths
