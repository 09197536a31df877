"""The resumable batch iterator: windows of work -> examples (in worker processes) -> batches.

A producer cuts its input into windows (a few thousand documents, or a block of static records)
and says how to turn one window into examples with a pure function of (window, key), where key =
(seed, process_index, process_count, epoch, window index). The iterator runs that function in
order (in `num_workers` processes if asked, with a bounded look-ahead) and cuts batches from the
concatenated examples. Memory is bounded by the window size times the look-ahead, never by the
corpus size.

State: because every window is a function of its key and its input position, the place in the
stream is {"epoch", "window", "position" (the producer's position of the window's input),
"offset" (examples of that window already consumed)} plus the seed and share for a sanity check:
a handful of ints, JSON-serializable. `set_state` re-reads that window and skips `offset`
examples, so a resumed iterator yields exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import abc
import collections
import multiprocessing
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pretrain import examples as examples_lib

STATE_VERSION = 1
BATCH_KEYS = (
  "input_ids",
  "attention_mask",
  "token_type_ids",
  "masked_lm_positions",
  "masked_lm_ids",
  "masked_lm_weights",
  "sentence_order_label",
)


class Producer(abc.ABC):
  """Cuts one process's share of the input into windows; `work` turns a window into examples."""

  name: str
  seed: int
  process_index: int
  process_count: int
  # Sent once to every worker process: what `work` needs besides the window (tokenizer, config).
  context: Any
  # A module-level function (context, window, key) -> examples dict: picklable, deterministic.
  work: Callable[[Any, Any, tuple[int, ...]], dict[str, np.ndarray]]

  @abc.abstractmethod
  def windows(self, epoch: int, position: dict | None) -> Iterator[tuple[Any, dict]]:
    """Yields (window, position after it) of `epoch`, starting at `position` (None: the start)."""

  def key(self, epoch: int, window: int) -> tuple[int, ...]:
    return (self.seed, self.process_index, self.process_count, epoch, window)

  def settings(self) -> str:
    """A short digest of the settings that decide the stream (checked when a state is restored)."""
    return ""

  def close(self) -> None:  # noqa: B027 (optional: producers without resources keep this)
    """Release the producer's resources (files, worker processes); nothing by default."""


_WORKER_CONTEXT: Any = None


def _init_worker(context: Any) -> None:
  global _WORKER_CONTEXT
  _WORKER_CONTEXT = context


def _run_in_worker(work: Callable, window: Any, key: tuple[int, ...]) -> dict[str, np.ndarray]:
  return work(_WORKER_CONTEXT, window, key)


def make_pool(num_workers: int, context: Any):
  """A pool of `num_workers` processes holding `context` (sent once, not with every window)."""
  # spawn, not fork: the parent may run JAX (threads), which fork would copy in a broken state.
  return multiprocessing.get_context("spawn").Pool(
    num_workers, initializer=_init_worker, initargs=(context,)
  )


def ordered_map(
  work: Callable,
  context: Any,
  tasks: Iterator,
  pool,
  prefetch: int,
  args: Callable[[Any], tuple[Any, tuple[int, ...]]],
) -> Iterator[tuple[Any, Any]]:
  """Yields (task, work(context, *args(task))) in task order; in `pool` (if not None) with at most
  `prefetch` tasks in flight, so reading never runs far ahead of the consumer."""
  if pool is None:
    for task in tasks:
      yield task, work(context, *args(task))
    return
  pending: collections.deque = collections.deque()
  for task in tasks:
    pending.append((task, pool.apply_async(_run_in_worker, (work, *args(task)))))
    if len(pending) >= prefetch:
      task, res = pending.popleft()
      yield task, res.get()
  while pending:
    task, res = pending.popleft()
    yield task, res.get()


class PretrainingIterator:
  """Iterator of batches (dicts of numpy arrays) with `get_state()` / `set_state(state)`.

  Each batch: input_ids, attention_mask, token_type_ids [B, S] int32; masked_lm_positions,
  masked_lm_ids [B, P] int32; masked_lm_weights [B, P] float32; sentence_order_label [B] int32.
  Use it as a context manager (or call `close()`) to stop worker processes early.
  """

  def __init__(
    self,
    producer: Producer,
    batch_size: int,
    *,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    num_workers: int = 0,
    prefetch: int | None = None,
    state: dict | None = None,
  ):
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs < 1):
      raise ValueError(
        f"num_epochs must be None (repeat forever) or an int >= 1, got {num_epochs!r}"
      )
    if not isinstance(num_workers, int) or num_workers < 0:
      raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    self.producer = producer
    self.batch_size = batch_size
    self.num_epochs = num_epochs
    self.drop_remainder = drop_remainder
    self.num_workers = num_workers
    self.prefetch = prefetch if prefetch is not None else 2 * max(num_workers, 1)
    self._pool = None
    self._finalizer = None
    self._stream: Iterator | None = None
    self.set_state(state or {"epoch": 0, "window": 0, "position": None, "offset": 0})

  # ---------------------------------------------------------------- state
  def get_state(self) -> dict:
    """The position after the last batch returned: small, JSON-serializable."""
    return {
      "version": STATE_VERSION,
      "epoch": self._epoch,
      "window": self._window,
      "position": self._position,
      "offset": self._offset,
      "seed": self.producer.seed,
      "process_index": self.producer.process_index,
      "process_count": self.producer.process_count,
      "settings": self.producer.settings(),
    }

  def set_state(self, state: dict) -> None:
    """Moves to a position returned by `get_state` (of an iterator with the same settings)."""
    if not isinstance(state, dict) or not {"epoch", "window", "position", "offset"} <= state.keys():
      raise ValueError(f"not an iterator state: {state!r}")
    for k in ("seed", "process_index", "process_count"):
      if k in state and state[k] != getattr(self.producer, k):
        raise ValueError(
          f"iterator state was saved with {k}={state[k]}, this iterator has "
          f"{k}={getattr(self.producer, k)}"
        )
    if state.get("settings", self.producer.settings()) != self.producer.settings():
      raise ValueError(
        "iterator state was saved with other data settings (window size, "
        "max_seq_length, masking or split options): it would not resume the same "
        "stream"
      )
    if self._stream is not None:
      self._stream.close()
    self._epoch, self._window = int(state["epoch"]), int(state["window"])
    self._position, self._offset = state["position"], int(state["offset"])
    self._stream = self._results(self._epoch, self._window, self._position)
    self._current: dict[str, np.ndarray] | None = None
    self._next_position: dict | None = None
    # Counted to detect a share that yields no examples in a whole epoch (else: an endless loop).
    self._fresh_epoch = self._window == 0 and self._position is None and self._offset == 0
    self._epoch_examples = 0

  # ---------------------------------------------------------------- windows -> examples
  def _tasks(self, epoch: int, window: int, position: dict | None):
    producer = self.producer
    while self.num_epochs is None or epoch < self.num_epochs:
      fresh = window == 0 and position is None
      count = 0
      for win, next_position in producer.windows(epoch, position):
        yield epoch, window, position, next_position, win
        window, position, count = window + 1, next_position, count + 1
      if fresh and count == 0:
        raise ValueError(
          f"{producer.name}: no documents for process {producer.process_index} of "
          f"{producer.process_count}"
        )
      epoch, window, position = epoch + 1, 0, None

  def _results(self, epoch: int, window: int, position: dict | None):
    producer = self.producer
    tasks = (
      (e, w, pos, nxt, win, producer.key(e, w))
      for e, w, pos, nxt, win in self._tasks(epoch, window, position)
    )
    pool = self._get_pool() if self.num_workers else None
    for (e, w, pos, nxt, _, _), ex in ordered_map(
      producer.work, producer.context, tasks, pool, self.prefetch, lambda t: (t[4], t[5])
    ):
      yield e, w, pos, nxt, ex

  def _get_pool(self):
    if self._pool is None:
      self._pool = make_pool(self.num_workers, self.producer.context)
      self._finalizer = weakref.finalize(self, self._pool.terminate)
    return self._pool

  def _advance(self) -> bool:
    """Loads the next window's examples; False at the end of the last epoch."""
    while True:
      try:
        e, w, pos, nxt, ex = next(self._stream)
      except StopIteration:
        self._check_epoch_had_examples()
        return False
      if e != self._epoch:
        self._check_epoch_had_examples()
        self._fresh_epoch, self._epoch_examples = True, 0
      n = examples_lib.num_examples(ex)
      self._epoch_examples += n
      # After a restore the first window is the saved one: skip what was consumed.
      offset = self._offset if (e, w) == (self._epoch, self._window) else 0
      self._epoch, self._window, self._position, self._next_position = e, w, pos, nxt
      if offset < n:
        self._current, self._offset = ex, offset
        return True
      self._window, self._position, self._offset = w + 1, nxt, 0

  def _check_epoch_had_examples(self) -> None:
    if self._fresh_epoch and self._epoch_examples == 0:
      p = self.producer
      raise ValueError(
        f"{p.name}: no pretraining examples in a whole epoch for process {p.process_index} of "
        f"{p.process_count} (a pair needs a document chunk of at least two sentences)"
      )

  # ---------------------------------------------------------------- batches
  def __iter__(self) -> PretrainingIterator:
    return self

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
      if self._offset == n:  # The window is used up: the state points past it.
        self._window, self._position, self._offset = self._window + 1, self._next_position, 0
        self._current = None
    if need and (self.drop_remainder or not parts):
      raise StopIteration
    return to_batch(examples_lib.concat_examples(parts) if len(parts) > 1 else parts[0])

  def close(self) -> None:
    """Stops the worker processes (if any)."""
    if self._stream is not None:
      self._stream.close()
    if self._finalizer is not None:
      self._finalizer()
      self._pool = self._finalizer = None
    self.producer.close()

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
