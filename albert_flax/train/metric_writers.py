"""Metric output of a training loop: metrics.jsonl, TensorBoard event files and a tqdm progress bar.

Only process 0 writes (every process may call). One JSON object per logged step:
{"step": 100, "loss": ..., ...}; evaluation rows carry "split": "eval". A resumed run drops the rows
after the step it resumed from, so the file of a run interrupted and resumed reads like the file
of a run never interrupted.

In a bucket (workdir gs://...): an object cannot be appended to, so metrics.jsonl is uploaded
whole after each row (one atomic object write: a reader sees every row so far, never half of
one; rows are few, one per logged step). TensorBoard event files are written by tensorboardX
into a local temporary folder and uploaded whole (through etils.epath, like every other file)
when they have grown, checked after each row, and at the end; TensorBoard reads them with
`--logdir gs://.../tensorboard`. (tensorboardX's thread writes the events out every
`flush_secs`, 120 s: the bucket's copy lags by as much, as a local file does.)
(tensorboardX's own gs:// writer is not used: it is a second Cloud Storage client, and its
writers, kept alive by an atexit hook, upload once more when garbage-collected at exit, retrying
for minutes when the bucket is unreachable by then.)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from albert_flax import paths
from albert_flax.workdir import METRICS_FILE, TENSORBOARD_DIR  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def _format(row: Mapping[str, Any]) -> str:
  return ", ".join(
    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
    for k, v in row.items()
    if k not in ("step", "split")
  )


def _to_python(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray, jax.Array)) and np.ndim(value) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN / inf: write "nan", "inf"
  return value


def _summary_writer_class() -> type:
  """tensorboardX's SummaryWriter, imported without importing torch (when nothing has yet).

  Any `import tensorboardX...` runs the package's __init__, which imports tensorboardX.writer, whose
  module-level `try: import torch` only decides a type annotation (`numpy_compatible`); with torch
  installed that import costs ~2 s of start-up per run, for nothing: we write float scalars. A None
  entry in sys.modules makes `import torch` raise ImportError (the documented import protocol),
  which tensorboardX catches; the entry is removed straight after, so later imports of torch work.
  The writer is created once at start-up, before threads that might import torch are running.
  """
  block_torch = "tensorboardX.writer" not in sys.modules and "torch" not in sys.modules
  if block_torch:
    sys.modules["torch"] = None  # type: ignore[assignment]
  try:
    from tensorboardX import SummaryWriter
  finally:
    if block_torch and sys.modules.get("torch", 0) is None:
      del sys.modules["torch"]
  return SummaryWriter


def _complete_rows(text: str) -> list[str]:
  rows = []
  for line in text.splitlines():
    try:
      rows.append(json.dumps(json.loads(line)) + "\n")
    except json.JSONDecodeError:  # a line cut short by a kill: drop it
      continue
  return rows


def truncate_rows_after(path: str | os.PathLike, step: int) -> None:
  """Keep only the rows of `path` (a metrics.jsonl, local or gs://...) with "step" <= step."""
  if not paths.path(path).exists():
    return
  kept = [
    row
    for row in _complete_rows(paths.read_text(path))
    if int(json.loads(row).get("step", 0)) <= step
  ]
  paths.write_text(path, "".join(kept))


class MetricWriter:
  """metrics.jsonl + TensorBoard + progress bar (rate and ETA) for a run of `total_steps`.

  Args:
    workdir: where metrics.jsonl and tensorboard/ go (local or gs://...).
    total_steps: the step the run ends at (the progress bar's total).
    initial_step: the step the run starts (or resumes) from; later rows already in the file
      are dropped.
    enabled: default: only on process 0.
    progress: show the tqdm bar when stderr is a terminal; otherwise (or when False) each
      written row becomes one log line instead of hundreds of bar redraws in a log file.
    tensorboard: write TensorBoard event files (tensorboardX).
  """

  def __init__(
    self,
    workdir: str | os.PathLike,
    total_steps: int,
    initial_step: int = 0,
    enabled: bool | None = None,
    progress: bool = True,
    tensorboard: bool = True,
  ):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    workdir = paths.path(workdir)
    self.path = os.fspath(workdir / METRICS_FILE)
    self._tb = self._bar = None
    self._tb_staging: str | None = None  # in a bucket: the local folder tensorboardX writes
    self._tb_uploaded: dict[str, int] = {}  # event file name -> the size uploaded
    self._tb_dir = workdir / TENSORBOARD_DIR
    self._file = None
    self._rows: list[str] | None = None  # in a bucket: every row, uploaded whole at each write
    self.total_steps = total_steps
    if not self.enabled:
      return
    workdir.mkdir(parents=True, exist_ok=True)
    truncate_rows_after(self.path, initial_step)
    if paths.is_local(workdir):
      self._file = open(self.path, "a", encoding="utf-8")
    else:
      exists = paths.path(self.path).exists()
      self._rows = _complete_rows(paths.read_text(self.path)) if exists else []
    if tensorboard:
      logdir = os.fspath(self._tb_dir)
      if not paths.is_local(workdir):
        logdir = self._tb_staging = tempfile.mkdtemp(prefix="albert_flax_tensorboard_")
      self._tb = _summary_writer_class()(logdir)
    if progress and sys.stderr.isatty():
      from tqdm import tqdm

      self._bar = tqdm(
        total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True, smoothing=0.1
      )

  def write(self, step: int, metrics: Mapping[str, Any], split: str | None = None) -> None:
    """One row {"step", **metrics (, "split")} to metrics.jsonl and scalars to TensorBoard."""
    if not self.enabled:
      return
    row = {"step": int(step)}
    row.update({k: _to_python(v) for k, v in metrics.items()})
    if split is not None:
      row["split"] = split
    if self._file is not None:
      self._file.write(json.dumps(row) + "\n")
      self._file.flush()
    else:
      self._rows.append(json.dumps(row) + "\n")
      paths.write_text(self.path, "".join(self._rows))
    if self._tb is not None:
      prefix = split or "train"
      for name, value in row.items():
        if name not in ("step", "split") and isinstance(value, (int, float)):
          self._tb.add_scalar(f"{prefix}/{name}", value, int(step))
      self._tb.flush()
      self._upload_tensorboard()
    if split is not None:  # evaluation results are news: always a log line
      log.info("%s at step %d: %s", split, step, _format(row))
    elif self._bar is None:
      log.info("step %d/%d: %s", step, self.total_steps, _format(row))
    if self._bar is not None and split is None and "loss" in row:
      self._bar.set_postfix(
        {k: row[k] for k in ("loss", "masked_lm_accuracy", "sentence_order_accuracy") if k in row},
        refresh=False,
      )

  def _upload_tensorboard(self) -> None:
    """In a bucket: copy the event files tensorboardX wrote locally (each whole: one object)."""
    if self._tb_staging is None:
      return
    for name in sorted(os.listdir(self._tb_staging)):
      local = os.path.join(self._tb_staging, name)
      if os.path.getsize(local) != self._tb_uploaded.get(name):
        with open(local, "rb") as f:
          data = f.read()
        paths.write_bytes(self._tb_dir / name, data)
        self._tb_uploaded[name] = len(data)

  def advance(self, step: int) -> None:
    """Move the progress bar to `step`."""
    if self._bar is not None and step > self._bar.n:
      self._bar.update(step - self._bar.n)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()
      self._upload_tensorboard()
    if self._tb_staging is not None:
      shutil.rmtree(self._tb_staging, ignore_errors=True)
      self._tb_staging = None
    if self._file is not None:
      self._file.close()
    self._tb = self._bar = self._file = self._rows = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
