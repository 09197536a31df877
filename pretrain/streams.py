"""The two streams of chunks of examples `pretrain.data.make_pretraining_batches` reads (a
`pipeline.ChunkStream` each): text documents masked as they are read (`TextStream`), and
examples written once by `python -m pretrain.create_data` (`StaticStream`)."""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from pretrain import corpus, pipeline, shards
from pretrain import examples as examples_lib
from pretrain.examples import ExampleConfig

log = logging.getLogger(__name__)


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
    """Chunks of `chunk_size` examples of this process's share of the globally shuffled records.

    Every epoch is a new permutation of all records (the same on every process); process p takes
    its positions p, p + n, p + 2n, ... (n processes): shares are disjoint, and every process
    gets as many examples (a finite stream is cut to a multiple of n).
    """
    num_records, count = len(self.source), self.process_count
    records = grain.MapDataset.source(self.source).shuffle(seed=self.seed % 2**32)
    records = records.repeat(self.num_epochs)
    if self.num_epochs is not None:
      records = records[: num_records * self.num_epochs // count * count]
    first = (start.position or {"example": 0})["example"]
    mine = records[self.process_index :: count][first:]
    decode = _DecodeRecords(self.max_seq_length, self.max_predictions_per_seq, self.name)
    chunks = mine.batch(self.chunk_size, batch_fn=decode).map_with_index(
      _AddChunkPosition(first, start.window, self.chunk_size, num_records / count)
    )
    # A few chunks read ahead by grain's threads (its default, 500 elements, is ~GBs of batches).
    return chunks.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2))

  def close(self) -> None:
    pass


class _DecodeRecords:
  """A list of records -> padded examples dict (grain's batch_fn)."""

  def __init__(self, max_seq_length: int, max_predictions_per_seq: int, name: str):
    self.args = (max_seq_length, max_predictions_per_seq, name)

  def __call__(self, records: list[bytes]) -> dict[str, np.ndarray]:
    return shards.decode_records(records, *self.args)


class _AddChunkPosition:
  """(index, examples) -> chunk: the example index it starts at is its input position."""

  def __init__(self, first: int, window: int, chunk_size: int, per_epoch: float):
    self.first, self.window, self.chunk_size, self.per_epoch = first, window, chunk_size, per_epoch

  def __call__(self, index: int, examples: dict[str, np.ndarray]) -> dict[str, Any]:
    start = self.first + index * self.chunk_size
    return {
      "epoch": int(start / self.per_epoch),
      "window": self.window + index,
      "position": {"example": start},
      "next_position": {"example": start + examples_lib.num_examples(examples)},
      "examples": examples,
    }


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
