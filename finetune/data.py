"""What every task shares: data errors that name file and line, atomic writes, feature arrays
and their batching.

A task turns examples into `Features`: a dict of equally long numpy arrays (the model inputs
`input_ids`, `token_type_ids`, `attention_mask` [N, seq] or [N, choices, seq] and the targets),
which `train_batches` shuffles and cuts into full batches and `eval_batches` cuts in order, padding
the last batch with weight-0 rows.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from etils import epath

from albert_flax import paths

Features = dict[str, np.ndarray]
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


class DataError(ValueError):
  """Bad input data; the message starts with "file:line:" when the place is known."""

  def __init__(self, path: str | os.PathLike | None, line: int | None, problem: str):
    where = os.fspath(path) if path is not None else "<data>"
    if line is not None:
      where += f":{line}"
    super().__init__(f"{where}: {problem}")
    self.path, self.line, self.problem = path, line, problem


# --------------------------------------------------------------------- input and output
# Paths are local or URLs of the path library (etils.epath, as orbax): data_dir and the workdir may
# be in a Cloud Storage bucket (gs://...).


def read_text(path: str | os.PathLike, kind: str) -> str:
  """The whole text of a data file, UTF-8 (a leading byte-order mark dropped: MRPC's files start
  with one). Fine-tuning sets are read whole anyway; a missing file is named with its `kind`."""
  file = epath.Path(path)
  if not file.is_file():
    raise FileNotFoundError(f"{kind} file not found: {path}")
  return file.read_bytes().decode("utf-8-sig")


def text_lines(text: str) -> io.StringIO:
  """The lines of `text` as a text-mode file gives them ("\\r\\n" and "\\r" end lines too)."""
  return io.StringIO(text, newline=None)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
  """Open `path` to write so that a crash never leaves a half-written file under its name.

  Locally: a temporary file next to it, renamed over it when the block succeeds. In a bucket:
  the text is kept in memory and uploaded when the block succeeds (an object appears whole when
  its upload completes; a rename there would be a copy and a delete, and closing a half-written
  upload would publish it).
  """
  if not paths.is_local(path):
    buffer = io.BytesIO() if "b" in mode else io.StringIO()
    yield buffer
    data = buffer.getvalue()
    paths.write_bytes(path, data if isinstance(data, bytes) else data.encode("utf-8"))
    return
  with paths.replacing(path) as tmp, tmp.open(mode) as f:
    yield f


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """JSON with sorted keys, written atomically."""
  paths.write_json(path, obj, indent=2, sort_keys=True, ensure_ascii=False)


def write_tsv(path: str | os.PathLike, header: list[str], rows: list[list[Any]]) -> None:
  with atomic_open(path) as f:
    f.write("\t".join(header) + "\n")
    for row in rows:
      f.write("\t".join(str(v) for v in row) + "\n")


# --------------------------------------------------------------------- features


def num_rows(features: Mapping[str, np.ndarray]) -> int:
  lengths = {k: len(v) for k, v in features.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"feature arrays differ in length: {lengths}")
  return next(iter(lengths.values()))


def pad_sequences(rows: list[list[int]], length: int, value: int = 0) -> np.ndarray:
  """[N][<= length] ragged ints -> int32 [N, length], right-padded with `value`."""
  out = np.full((len(rows), length), value, np.int32)
  for i, row in enumerate(rows):
    if len(row) > length:
      raise ValueError(f"row {i} has {len(row)} tokens, more than {length}")
    out[i, : len(row)] = row
  return out


def encode_pairs(
  first: list[list[int]], second: list[list[int]] | None, max_length: int, cls_id: int, sep_id: int
) -> Features:
  """`[CLS] a [SEP] (b [SEP])` for token-id lists, truncated longest-first (the original
  run_classifier's `_truncate_seq_pair`: drop the last token of the longer side), right-padded.

  Returns input_ids, token_type_ids, attention_mask: int32 [N, max_length].
  """
  specials = 3 if second is not None else 2
  if max_length <= specials:
    raise ValueError(f"max_seq_length {max_length} leaves no room for text")
  ids, types = [], []
  for i, a in enumerate(first):
    b = second[i] if second is not None else None
    a = list(a)
    if b is None:
      a = a[: max_length - specials]
      ids.append([cls_id] + a + [sep_id])
      types.append([0] * (len(a) + 2))
      continue
    b = list(b)
    while len(a) + len(b) > max_length - specials:
      (a if len(a) > len(b) else b).pop()
    ids.append([cls_id] + a + [sep_id] + b + [sep_id])
    types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
  input_ids = pad_sequences(ids, max_length)
  return {
    "input_ids": input_ids,
    "token_type_ids": pad_sequences(types, max_length),
    "attention_mask": (
      np.arange(max_length)[None, :] < np.array([len(r) for r in ids])[:, None]
    ).astype(np.int32),
  }


def train_batches(
  features: Features, batch_size: int, seed: int, start_step: int = 0
) -> Iterator[Features]:
  """Endless full batches: each epoch a fresh permutation (seeded by seed and epoch), rows that
  do not fill the epoch's last batch carried into the next epoch. Starting at `start_step`
  reproduces the batches a run from step 0 would have seen from there on (for resumption)."""
  n = num_rows(features)
  if n == 0:
    raise ValueError("no training examples")
  step = 0
  epoch = 0
  pending = np.zeros((0,), np.int64)
  while True:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    pending = np.concatenate([pending, order])
    epoch += 1
    while len(pending) >= batch_size:
      take, pending = pending[:batch_size], pending[batch_size:]
      if step >= start_step:
        yield {k: v[take] for k, v in features.items()}
      step += 1


def eval_batches(features: Features, batch_size: int) -> Iterator[Features]:
  """Batches in order; the last one padded by repeating row 0 with `weights` 0 ([batch] float32,
  1 on real rows), so every batch has the same shape and compiles once."""
  n = num_rows(features)
  for start in range(0, n, batch_size):
    idx = np.arange(start, min(start + batch_size, n))
    real = len(idx)
    if real < batch_size:
      idx = np.concatenate([idx, np.zeros(batch_size - real, np.int64)])
    batch = {k: v[idx] for k, v in features.items()}
    batch["weights"] = (np.arange(batch_size) < real).astype(np.float32)
    yield batch
