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
does not grow with the corpus.

Batches: input_ids, attention_mask, token_type_ids [B, S] int32 (`[CLS] A [SEP] B [SEP]`, right
padding with id 0; token type 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`); masked_lm_positions,
masked_lm_ids [B, P] int32; masked_lm_weights [B, P] float32 (0 on padding predictions);
sentence_order_label [B] int32 (1 = the two segments are swapped).
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pretrain import builtin_corpus, corpus, shards, word_segmentation
from pretrain.examples import ExampleConfig, make_examples, tokenize_documents
from pretrain.pipeline import BATCH_KEYS, PretrainingIterator, Producer

__all__ = [
  "make_pretraining_batches",
  "PretrainingIterator",
  "ExampleConfig",
  "BATCH_KEYS",
  "make_source",
  "split_corpus",
  "load_tokenizer",
  "TextProducer",
  "StaticProducer",
]

DEFAULT_SHUFFLE_BUFFER_DOCS = 1024
DEFAULT_SHUFFLE_BUFFER_EXAMPLES = 4096


# ----------------------------------------------------------------------------- producers


@dataclasses.dataclass(frozen=True)
class _TextContext:
  tokenizer: Any
  config: ExampleConfig


def _text_work(
  ctx: _TextContext, docs: list[list[str]], key: tuple[int, ...]
) -> dict[str, np.ndarray]:
  return make_examples(tokenize_documents(docs, ctx.tokenizer), ctx.config, ctx.tokenizer, key)


class TextProducer(Producer):
  """Windows of `window_docs` documents of a source -> dynamically masked examples."""

  work = staticmethod(_text_work)

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
  ):
    if window_docs < 1:
      raise ValueError(f"shuffle_buffer must be >= 1 document, got {window_docs}")
    corpus.check_split(split)
    _check_vocab(tokenizer)
    self.source, self.window_docs = source, window_docs
    self.seed, self.process_index, self.process_count = seed, process_index, process_count
    self.split, self.eval_fraction = split, eval_fraction
    self.context = _TextContext(tokenizer, config)
    self.name = source.name + (f" (split {split})" if split not in (None, "all") else "")

  def settings(self) -> str:
    return _digest(
      self.window_docs,
      self.context.config,
      self.split,
      self.eval_fraction,
      self.context.tokenizer.vocab_size,
      type(self.source).__name__,
    )

  def windows(self, epoch: int, position: dict | None) -> Iterator[tuple[list, dict]]:
    docs: list[list[str]] = []
    pos = position
    stream = self.source.documents(
      epoch, position, self.process_index, self.process_count, self.seed
    )
    for doc, pos in corpus.select_split(stream, self.split, self.eval_fraction):
      docs.append(doc)
      if len(docs) == self.window_docs:
        yield docs, pos
        docs = []
    if docs:
      yield docs, pos


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


@dataclasses.dataclass(frozen=True)
class _StaticContext:
  max_seq_length: int
  max_predictions_per_seq: int
  name: str


def _static_work(
  ctx: _StaticContext, records: list[bytes], key: tuple[int, ...]
) -> dict[str, np.ndarray]:
  ex = shards.decode_records(records, ctx.max_seq_length, ctx.max_predictions_per_seq, ctx.name)
  order = np.random.default_rng(list(key)).permutation(len(records))
  return {k: v[order] for k, v in ex.items()}


class StaticProducer(Producer):
  """Blocks of `block_size` records of static shards; block order and record order within a block
  are shuffled every epoch. Process p reads records [p * m, (p + 1) * m) of the concatenated
  shards, m = total // process_count, so every process gets as many examples."""

  work = staticmethod(_static_work)

  def __init__(
    self,
    files: str | Sequence[str],
    max_seq_length: int,
    max_predictions_per_seq: int,
    block_size: int,
    seed: int,
    process_index: int,
    process_count: int,
  ):
    if block_size < 1:
      raise ValueError(f"shuffle_buffer must be >= 1 example, got {block_size}")
    self.reader = shards.ShardReader(files)
    self.name = self.reader.name
    info = shards.read_info(self.reader.files)
    if info is not None and info.get("max_seq_length", 0) > max_seq_length:
      raise ValueError(
        f"{self.name} were written with max_seq_length={info['max_seq_length']}, "
        f"larger than the requested {max_seq_length}"
      )
    self.share = len(self.reader) // process_count
    if self.share == 0:
      raise ValueError(
        f"{self.name}: {len(self.reader)} examples cannot be shared among {process_count} processes"
      )
    self.first = process_index * self.share
    self.block_size = block_size
    self.num_blocks = math.ceil(self.share / block_size)
    self.seed, self.process_index, self.process_count = seed, process_index, process_count
    self.context = _StaticContext(max_seq_length, max_predictions_per_seq, self.name)

  def settings(self) -> str:
    return _digest(
      self.block_size,
      self.context.max_seq_length,
      self.context.max_predictions_per_seq,
      len(self.reader),
    )

  def windows(self, epoch: int, position: dict | None) -> Iterator[tuple[list, dict]]:
    order = np.random.default_rng([self.seed, self.process_index, epoch, 0xB10C]).permutation(
      self.num_blocks
    )
    for i in range((position or {"block": 0})["block"], self.num_blocks):
      start = self.first + int(order[i]) * self.block_size
      end = min(start + self.block_size, self.first + self.share)
      yield self.reader.read(start, end), {"block": i + 1}

  def close(self) -> None:
    self.reader.close()


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


def _is_static(files: Any) -> bool:
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
    shuffle_buffer: documents per window (text; default 1024) or examples per block (static;
      default 4096): memory is proportional to it.
    process_index, process_count: this process's share (default: jax.process_index()/count()).
    num_workers: worker processes making examples (0: in this process). Results do not depend
      on it. Workers are spawned: call from under `if __name__ == "__main__":` in scripts.
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
  config = ExampleConfig(
    max_seq_length, max_predictions_per_seq, masked_lm_prob, short_seq_prob, max_ngram
  )
  config = dataclasses.replace(config, word_segmenter=word_segmenter or None)
  word_segmentation.check_segmenter(config.word_segmenter)
  if static_shards is None and files is not None and _is_static(files):
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
    producer: Producer = StaticProducer(
      static_shards,
      max_seq_length,
      max_predictions_per_seq,
      shuffle_buffer or DEFAULT_SHUFFLE_BUFFER_EXAMPLES,
      int(seed),
      process_index,
      process_count,
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
    producer = TextProducer(
      source,
      tokenizer,
      config,
      shuffle_buffer or DEFAULT_SHUFFLE_BUFFER_DOCS,
      int(seed),
      process_index,
      process_count,
      split or builtin_split,
      eval_fraction,
    )
  return PretrainingIterator(
    producer,
    batch_size,
    num_epochs=num_epochs,
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
  os.makedirs(output_dir, exist_ok=True)
  paths = (os.path.join(output_dir, "train.txt"), os.path.join(output_dir, "eval.txt"))
  counts = [0, 0]
  with open(paths[0], "w", encoding="utf-8") as train, open(paths[1], "w", encoding="utf-8") as ev:
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
