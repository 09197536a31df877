"""The pretraining input on grain: document windows -> pairs -> masks -> batches, resumable.

Text (dynamic masking):
    DocumentWindows (a grain IterDataset: `shuffle_buffer` documents of this process's share per
    element, epoch after epoch)
    .map(MakePairs)   tokenize, sentence-order pairs, shuffle, pack   (rng: key + PAIRS)
    .map(MaskTokens)  n-gram whole-word masking                      (rng: key + MASKS)
    .mp_prefetch(num_workers)
Static shards (masked once by `python -m pretrain.create_data`; `streams.StaticStream.dataset`):
    MapDataset.source(ArrayRecordDataSource).shuffle(seed).repeat(num_epochs)[p::n]
    .batch(batch_size, decode)   a global shuffle, reseeded every epoch (grain's index shuffle:
    no permutation array, memory flat in the number of records)
    .to_iter_dataset().mp_prefetch(num_workers)
Then `PretrainingIterator` (a grain DatasetIterator) cuts the chunks into batches.

Every chunk is a pure function of its key (seed, process_index, process_count, epoch, window) and
of its input position, and carries both. The randomness of pairing and of masking comes from the
key, not from grain's per-iterator element counter, so a chunk is the same whether made in this
process or in any of the `mp_prefetch` workers (each reads the stream and keeps every n-th window).

State: {"epoch", "window", "position" (where the chunk holding the next example starts),
"offset" (its examples already returned)} plus seed, share and a digest of the settings for a
sanity check: a handful of ints, JSON. `set_state` rebuilds the grain pipeline from that
position. We keep this state instead of grain's own: grain's state of an `mp_prefetch` pipeline
is every worker's state, so it grows with the workers and only restores with the same
`num_workers`, and grain's `RebatchIterDataset` rejects empty chunks (a window may make no
example); ours restores with any number of workers and fits in a few hundred bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol

import grain
import numpy as np

from albert_flax import upstream
from pretrain import corpus
from pretrain import examples as examples_lib
from pretrain.examples import ExampleConfig
from pretrain.spec import BATCH_KEYS  # the batch the step takes, in its order

# Appended to a chunk's key: pairing and masking draw from streams of their own.
PAIRS_STREAM, MASKS_STREAM = 0x5041, 0x4D41


@dataclasses.dataclass(frozen=True)
class Start:
  """Where a stream starts: epoch, index of the window in it, input position of that window."""

  epoch: int = 0
  window: int = 0
  position: dict | None = None


# ----------------------------------------------------------------------------- text


class DocumentWindows(grain.IterDataset):
  """Windows of `window_docs` documents of one process's share of `source`, from `start`.

  Elements: {"key", "epoch", "window", "position", "next_position", "documents"}; the file order
  is shuffled every epoch (by the source), pairs are shuffled within a window (by MakePairs).
  `num_epochs` None repeats forever. `set_slice` (called by `mp_prefetch` in each worker) keeps
  every `step`-th window: all workers read the text, each tokenizes and masks its own windows.
  """

  def __init__(
    self,
    source: corpus.DocumentSource,
    window_docs: int,
    seed: int,
    process_index: int,
    process_count: int,
    num_epochs: int | None = None,
    split: str | None = None,
    eval_fraction: float = corpus.DEFAULT_EVAL_FRACTION,
    start: Start = Start(),
  ):
    super().__init__()
    self.source, self.window_docs, self.num_epochs = source, window_docs, num_epochs
    self.seed, self.process_index, self.process_count = seed, process_index, process_count
    self.split, self.eval_fraction, self.start = split, eval_fraction, start
    self.slice = slice(0, None, 1)

  def set_slice(self, sl: slice, sequential_slice: bool = False) -> None:
    del sequential_slice  # Windows are dealt round-robin, the order mp_prefetch reads them in.
    self.slice = sl

  def windows(self, start: Start) -> Iterator[dict[str, Any]]:
    epoch, window, position = start.epoch, start.window, start.position
    first, step = self.slice.start or 0, self.slice.step or 1
    ordinal = 0
    while self.num_epochs is None or epoch < self.num_epochs:
      fresh, count, docs = window == 0 and position is None, 0, []
      stream = self.source.documents(
        epoch, position, self.process_index, self.process_count, self.seed
      )
      for doc, pos in corpus.select_split(stream, self.split, self.eval_fraction):
        docs.append(doc)
        if len(docs) == self.window_docs:
          yield from self._element(epoch, window, position, pos, docs, ordinal, first, step)
          window, position, docs, ordinal, count = window + 1, pos, [], ordinal + 1, count + 1
      if docs:
        yield from self._element(epoch, window, position, pos, docs, ordinal, first, step)
        ordinal, count = ordinal + 1, count + 1
      if fresh and count == 0:
        raise ValueError(
          f"{self.source.name}: no documents for process {self.process_index} of "
          f"{self.process_count}"
        )
      epoch, window, position = epoch + 1, 0, None

  def _element(self, epoch, window, position, next_position, docs, ordinal, first, step):
    if ordinal % step == first:
      key = (self.seed, self.process_index, self.process_count, epoch, window)
      yield {
        "key": key,
        "epoch": epoch,
        "window": window,
        "position": position,
        "next_position": next_position,
        "documents": docs,
      }

  def __iter__(self) -> grain.DatasetIterator:
    return _WindowsIterator(self)


class _WindowsIterator(grain.DatasetIterator):
  """Iterator over DocumentWindows; its state is the (epoch, window, position) of the next one."""

  def __init__(self, ds: DocumentWindows):
    super().__init__()
    self._ds = ds
    self.set_state(dataclasses.asdict(ds.start))

  def __next__(self) -> dict[str, Any]:
    element = next(self._windows)
    self._next = {"epoch": element["epoch"], "window": element["window"] + 1}
    self._next["position"] = element["next_position"]
    return element

  def get_state(self) -> dict[str, Any]:
    return dict(self._next)

  def set_state(self, state: dict[str, Any]) -> None:
    self._next = dict(state)
    self._windows = self._ds.windows(Start(**state))


class MakePairs(grain.transforms.Map):
  """Window -> its documents tokenized, sentence-order pairs shuffled and packed (unmasked)."""

  def __init__(self, tokenizer: Any, config: ExampleConfig):
    self.tokenizer, self.config = tokenizer, config

  def map(self, window: dict[str, Any]) -> dict[str, Any]:
    tok = examples_lib.tokenize_documents(window.pop("documents"), self.tokenizer)
    rng = np.random.default_rng([*window["key"], PAIRS_STREAM])
    window["examples"] = examples_lib.pair_examples(tok, self.config, self.tokenizer, rng)
    return window


class MaskTokens(grain.transforms.Map):
  """Paired examples -> n-gram whole-word masked (masked_lm_* arrays added, input_ids masked)."""

  def __init__(self, tokenizer: Any, config: ExampleConfig):
    self.tokenizer, self.config = tokenizer, config

  def map(self, chunk: dict[str, Any]) -> dict[str, Any]:
    ex = chunk["examples"]
    rng = np.random.default_rng([*chunk["key"], MASKS_STREAM])
    continues_word = ex.pop(examples_lib.CONTINUES_WORD, None)
    m = examples_lib.mask_with_tokenizer(
      ex["input_ids"], ex["length"], self.tokenizer, self.config, rng, continues_word
    )
    ex.update(
      input_ids=m.input_ids,
      masked_lm_positions=m.masked_lm_positions,
      masked_lm_ids=m.masked_lm_ids,
      masked_lm_weights=m.masked_lm_weights,
    )
    return chunk


# ----------------------------------------------------------------------------- batches


class ChunkStream(Protocol):
  """What `PretrainingIterator` reads: one process's share of a source as grain datasets of
  chunks of examples (`pretrain.streams.TextStream`, `StaticStream`)."""

  name: str  # for error messages
  seed: int
  process_index: int
  process_count: int

  def dataset(self, start: Start) -> grain.IterDataset:
    """Chunks {"epoch", "window", "position", "next_position", "examples"} from `start` on."""
    ...

  def settings(self) -> str:
    """A digest of the settings that shape the stream (a saved state must match it)."""
    ...

  def close(self) -> None: ...


class PretrainingIterator(grain.DatasetIterator):
  """Iterator of batches (dicts of numpy arrays) with `get_state()` / `set_state(state)`.

  Each batch: input_ids, attention_mask, token_type_ids [B, S] int32; masked_lm_positions,
  masked_lm_ids [B, P] int32; masked_lm_weights [B, P] float32; sentence_order_label [B] int32.
  Use it as a context manager (or call `close()`) to stop the worker processes early.

  Args:
    stream: the chunks of examples to cut into batches (a `ChunkStream`).
    batch_size: examples per batch.
    drop_remainder: drop the last incomplete batch of a finite stream.
    num_workers: grain `mp_prefetch` worker processes (0: in this process). The batches do not
      depend on it. Workers are spawned: call from under `if __name__ == "__main__":` in scripts.
    state: a `get_state()` result to start from.
  """

  def __init__(
    self,
    stream: ChunkStream,
    batch_size: int,
    *,
    drop_remainder: bool = True,
    num_workers: int = 0,
    state: dict | None = None,
  ):
    super().__init__()
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
      raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    self.stream, self.batch_size = stream, batch_size
    self.drop_remainder, self.num_workers = drop_remainder, num_workers
    self._chunks: Any = None
    self.set_state(state or {"epoch": 0, "window": 0, "position": None, "offset": 0})

  # ---------------------------------------------------------------- state
  def get_state(self) -> dict:
    """The position after the last batch returned: small, JSON-serializable."""
    s = self.stream
    return {
      "epoch": self._epoch,
      "window": self._window,
      "position": self._position,
      "offset": self._offset,
      "seed": s.seed,
      "process_index": s.process_index,
      "process_count": s.process_count,
      "settings": s.settings(),
    }

  def set_state(self, state: dict) -> None:
    """Moves to a position returned by `get_state` (of an iterator with the same settings)."""
    if not isinstance(state, dict) or not {"epoch", "window", "position", "offset"} <= state.keys():
      raise ValueError(f"not an iterator state: {state!r}")
    for k in ("seed", "process_index", "process_count"):
      if k in state and state[k] != getattr(self.stream, k):
        raise ValueError(
          f"iterator state was saved with {k}={state[k]}, this iterator has "
          f"{k}={getattr(self.stream, k)}"
        )
    if state.get("settings", self.stream.settings()) != self.stream.settings():
      raise ValueError(
        "iterator state was saved with other data settings (window size, "
        "max_seq_length, masking or split options): it would not resume the same "
        "stream"
      )
    self._close_chunks()
    self._epoch, self._window = int(state["epoch"]), int(state["window"])
    self._position, self._offset = state["position"], int(state["offset"])
    ds = self.stream.dataset(Start(self._epoch, self._window, self._position))
    if self.num_workers:
      upstream.allow_unparsed_absl_flags()  # GRAIN_UNPARSED_ABSL_FLAGS
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(self.num_workers, per_worker_buffer_size=2))
    self._chunks = iter(ds)
    self._current: dict[str, np.ndarray] | None = None
    self._next_position: dict | None = None
    # Counted to detect a share that yields no examples in a whole epoch (else: an endless loop).
    self._fresh_epoch = self._window == 0 and self._position is None and self._offset == 0
    self._epoch_examples = 0

  # ---------------------------------------------------------------- chunks -> batches
  def _advance(self) -> bool:
    """Loads the next chunk's examples; False at the end of the stream."""
    while True:
      try:
        chunk = next(self._chunks)
      except StopIteration:
        self._check_epoch_had_examples()
        return False
      e, w, ex = chunk["epoch"], chunk["window"], chunk["examples"]
      if e != self._epoch:
        self._check_epoch_had_examples()
        self._fresh_epoch, self._epoch_examples = True, 0
      n = examples_lib.num_examples(ex)
      self._epoch_examples += n
      # After a restore the first chunk is the saved one: skip what was consumed.
      offset = self._offset if (e, w) == (self._epoch, self._window) else 0
      self._epoch, self._window = e, w
      self._position, self._next_position = chunk["position"], chunk["next_position"]
      if offset < n:
        self._current, self._offset = ex, offset
        return True
      self._window, self._position, self._offset = w + 1, self._next_position, 0

  def _check_epoch_had_examples(self) -> None:
    if self._fresh_epoch and self._epoch_examples == 0:
      s = self.stream
      raise ValueError(
        f"{s.name}: no pretraining examples in a whole epoch for process {s.process_index} of "
        f"{s.process_count} (a pair needs a document chunk of at least two sentences)"
      )

  def __next__(self) -> dict[str, np.ndarray]:
    parts = []
    need = self.batch_size
    while need:
      if self._current is None and not self._advance():
        break
      n = examples_lib.num_examples(self._current)
      take = min(need, n - self._offset)
      parts.append({k: v[self._offset : self._offset + take] for k, v in self._current.items()})
      self._offset += take
      need -= take
      if self._offset == n:  # The chunk is used up: the state points past it.
        self._window, self._position, self._offset = self._window + 1, self._next_position, 0
        self._current = None
    if need and (self.drop_remainder or not parts):
      raise StopIteration
    return to_batch(examples_lib.concat_examples(parts) if len(parts) > 1 else parts[0])

  def _close_chunks(self) -> None:
    close = getattr(self._chunks, "close", None)
    if close is not None:
      close()
    self._chunks = None

  def close(self) -> None:
    """Stops the worker processes (if any) and closes the input."""
    self._close_chunks()
    self.stream.close()

  def __enter__(self) -> PretrainingIterator:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def to_batch(ex: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Examples dict -> model batch: adds attention_mask [B, S] from the lengths, drops `length`."""
  seq_len = ex["input_ids"].shape[1]
  attention_mask = (np.arange(seq_len)[None, :] < ex["length"][:, None]).astype(np.int32)
  batch = {k: np.ascontiguousarray(ex[k]) for k in BATCH_KEYS if k != "attention_mask"}
  batch["attention_mask"] = attention_mask
  return {k: batch[k] for k in BATCH_KEYS}
