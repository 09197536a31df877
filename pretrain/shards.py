"""Statically masked examples in ArrayRecord shards: the record format, the writer, the reader.

One record is one example, int32 little-endian:
  [RECORD_VERSION, length, first_len, sentence_order_label, num_masked,
   input_ids[:length] (already masked), masked_lm_positions[:num_masked],
   masked_lm_ids[:num_masked]]
`first_len` is the length of segment A, so token types follow ([CLS] A [SEP] -> 0, B [SEP] -> 1).
Records are unpadded; the reader pads to the requested max_seq_length / max_predictions_per_seq
(which must be at least the written ones). `python -m pretrain.create_data` writes them, together
with `pretraining_data.json` (how they were made) in the output directory.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
from etils import epath

from albert_flax import paths
from pretrain import corpus
from pretrain.examples import EXAMPLE_KEYS

RECORD_VERSION = 1
_HEADER = 5
INFO_FILE = "pretraining_data.json"
INFO_FORMAT = "albert-flax-pretraining-examples-v1"


def _array_record():
  try:
    from array_record.python import array_record_module
  except ImportError as e:
    raise ImportError(
      "static shards need the array_record package: pip install array-record"
    ) from e
  return array_record_module


def encode_records(ex: dict[str, np.ndarray]) -> list[bytes]:
  """Serializes an examples dict (see pretrain.examples) into one record per example."""
  length = ex["length"]
  first_len = (ex["token_type_ids"] == 0).sum(axis=1) - 2 - (ex["input_ids"].shape[1] - length)
  num_masked = (ex["masked_lm_weights"] > 0).sum(axis=1)
  out = []
  for i in range(len(length)):
    n, m = int(length[i]), int(num_masked[i])
    rec = np.concatenate(
      [
        np.array([RECORD_VERSION, n, first_len[i], ex["sentence_order_label"][i], m], np.int32),
        ex["input_ids"][i, :n],
        ex["masked_lm_positions"][i, :m],
        ex["masked_lm_ids"][i, :m],
      ]
    )
    out.append(rec.astype("<i4").tobytes())
  return out


def decode_records(
  records: Sequence[bytes],
  max_seq_length: int,
  max_predictions_per_seq: int,
  where: str = "static shards",
) -> dict[str, np.ndarray]:
  """Parses records into a padded examples dict ([N, max_seq_length], [N, max_predictions])."""
  n = len(records)
  sizes = np.fromiter((len(r) for r in records), np.int64, n)
  if n == 0 or (sizes % 4).any() or (sizes < 4 * _HEADER).any():
    if n == 0:
      return _empty(max_seq_length, max_predictions_per_seq)
    raise ValueError(f"{where}: a record is not an albert-flax pretraining example")
  flat = np.frombuffer(b"".join(records), "<i4").astype(np.int32)
  start = np.zeros(n, np.int64)
  np.cumsum(sizes[:-1] // 4, out=start[1:])
  version, length, first_len, label, num_masked = (flat[start + i] for i in range(_HEADER))
  if (version != RECORD_VERSION).any():
    raise ValueError(
      f"{where}: record version {int(version[version != RECORD_VERSION][0])}, "
      f"expected {RECORD_VERSION}"
    )
  if (_HEADER + length + 2 * num_masked != sizes // 4).any():
    raise ValueError(f"{where}: a record's size does not match its header (corrupt shard?)")
  if length.max() > max_seq_length:
    raise ValueError(
      f"{where}: examples of length up to {int(length.max())} do not fit "
      f"max_seq_length={max_seq_length} (written with a larger max_seq_length)"
    )
  if num_masked.max() > max_predictions_per_seq:
    raise ValueError(
      f"{where}: examples have up to {int(num_masked.max())} predictions, more than "
      f"max_predictions_per_seq={max_predictions_per_seq}"
    )
  j = np.arange(max_seq_length)[None, :]
  valid = j < length[:, None]
  input_ids = np.where(valid, flat[np.where(valid, start[:, None] + _HEADER + j, 0)], 0)
  token_type_ids = (valid & (j >= first_len[:, None] + 2)).astype(np.int32)
  k = np.arange(max_predictions_per_seq)[None, :]
  has = k < num_masked[:, None]
  pos_at = start[:, None] + _HEADER + length[:, None] + k
  positions = np.where(has, flat[np.where(has, pos_at, 0)], 0)
  ids = np.where(has, flat[np.where(has, pos_at + num_masked[:, None], 0)], 0)
  return {
    "input_ids": input_ids.astype(np.int32),
    "token_type_ids": token_type_ids,
    "length": length.astype(np.int32),
    "masked_lm_positions": positions.astype(np.int32),
    "masked_lm_ids": ids.astype(np.int32),
    "masked_lm_weights": has.astype(np.float32),
    "sentence_order_label": label.astype(np.int32),
  }


def _empty(s: int, p: int) -> dict[str, np.ndarray]:
  shapes = {
    "input_ids": (0, s),
    "token_type_ids": (0, s),
    "length": (0,),
    "masked_lm_positions": (0, p),
    "masked_lm_ids": (0, p),
    "masked_lm_weights": (0, p),
    "sentence_order_label": (0,),
  }
  return {
    k: np.zeros(shapes[k], np.float32 if k == "masked_lm_weights" else np.int32)
    for k in EXAMPLE_KEYS
  }


class ShardWriter:
  """Writes examples round-robin into `num_shards` ArrayRecord files in `output_dir`.

  array_record writes local files only (its writer is a file descriptor; its reader also reads
  gs://): for an output_dir elsewhere (a bucket) the shards are written to a local temporary
  folder and copied there by `close`, so the local disk must hold them once.
  """

  def __init__(self, output_dir: str | epath.PathLike, num_shards: int, prefix: str = "pretrain"):
    if num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    output = epath.Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    names = [f"{prefix}-{i:05d}-of-{num_shards:05d}.array_record" for i in range(num_shards)]
    self.paths = [str(output / n) for n in names]
    self._staging = (
      None if paths.is_local(output) else tempfile.mkdtemp(prefix="albert_flax_shards.")
    )
    written = [epath.Path(self._staging) / n for n in names] if self._staging else self.paths
    ar = _array_record()
    # group_size 1: every record can be read alone (the reader reads ranges of them).
    self._writers = [ar.ArrayRecordWriter(str(p), "group_size:1") for p in written]
    self._written = [str(p) for p in written]
    self.counts = [0] * num_shards
    self._next = 0

  def write(self, ex: dict[str, np.ndarray]) -> None:
    for rec in encode_records(ex):
      self._writers[self._next].write(rec)
      self.counts[self._next] += 1
      self._next = (self._next + 1) % len(self._writers)

  def close(self) -> None:
    for w in self._writers:
      w.close()
    if self._staging:
      try:
        for local, final in zip(self._written, self.paths):
          epath.Path(local).copy(final, overwrite=True)
      finally:
        shutil.rmtree(self._staging, ignore_errors=True)


def write_info(output_dir: str | epath.PathLike, info: dict[str, Any]) -> str:
  path = epath.Path(output_dir) / INFO_FILE
  path.write_text(json.dumps({"format": INFO_FORMAT, **info}, indent=2))
  return str(path)


def read_info(files: Sequence[str]) -> dict[str, Any] | None:
  """The `pretraining_data.json` next to the first shard, if there is one."""
  path = paths.path(files[0]).parent / INFO_FILE
  if not path.exists():
    return None
  return json.loads(path.read_text())


def open_shards(files: str | Sequence[str]) -> Any:
  """A `grain.sources.ArrayRecordDataSource` over the records of all `files` (globs), in order.

  Raises:
    ValueError: naming a file that is not an ArrayRecord file, or when there are no records.
  """
  import grain

  _array_record()  # The clear ImportError when array_record is missing.
  paths = corpus.expand_files(files)
  for path in paths:
    try:  # Open each file once here: a bad one is named now, not in a worker later.
      _array_record().ArrayRecordReader(path).close()
    except Exception as e:  # array_record raises ValueError/RuntimeError with the riegeli message.
      raise ValueError(f"cannot read static shard {path!r}: {e}") from e
  source = grain.sources.ArrayRecordDataSource(paths)
  if len(source) == 0:
    raise ValueError(f"{shards_name(source)}: no examples")
  return source


def shards_name(source: Any) -> str:
  """How errors name a set of shards."""
  paths = [str(p) for p in source.paths] if not isinstance(source.paths, str) else [source.paths]
  more = f" (+{len(paths) - 1} more)" if len(paths) > 1 else ""
  return f"static shards {paths[0]!r}{more}"
