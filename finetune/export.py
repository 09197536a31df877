"""The fine-tuned model, written: orbax in workdir/model (and transformers' format in
workdir/hf with config.export_hf), each replaced whole so a reader never sees half a model."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import jax
from etils import epath

import albert_flax as af
from albert_flax import paths
from albert_flax import workdir as layout
from finetune.batching import gather


def save_models(workdir: epath.Path, model, best_params, tokenizer, export_hf: bool) -> None:
  """workdir/model (orbax) and, with export_hf, workdir/hf; every process takes part."""
  lead = jax.process_index() == 0
  if jax.process_count() == 1:
    _export(
      model,
      jax.device_get(best_params),
      tokenizer,
      workdir / layout.MODEL_DIR,
      "orbax",
    )
  else:
    # Every process writes its shards; orbax commits the directory only once all are written.
    af.save_pretrained(
      workdir / layout.MODEL_DIR,
      model,
      best_params,
      format="orbax",
      tokenizer=tokenizer,
    )
  if export_hf:
    host_params = gather(best_params)  # every process takes part; the lead writes
    if lead:
      _export(model, host_params, tokenizer, workdir / layout.HF_EXPORT_DIR, "hf")


def replace_dir(path: epath.Path, write: Callable[[epath.Path], Any]) -> None:
  """`write(directory)` into a temporary sibling of `path`, then one rename onto it: no
  half-written folder. In a bucket, where a folder's "rename" copies every object, written in
  place (a file written after it, such as eval_results.json, says the writing completed)."""
  if not paths.is_local(path):
    if path.exists():
      path.rmtree()
    write(path)
    return
  tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
  try:
    write(tmp)
    if path.exists():
      path.rmtree()
    paths.move_tree(tmp, path)
  except BaseException:
    tmp.rmtree(missing_ok=True)
    raise


def _export(model, params, tokenizer, path: epath.Path, format: str) -> None:
  """save_pretrained into `path`, replaced whole (`replace_dir`)."""
  replace_dir(
    path, lambda where: af.save_pretrained(where, model, params, format=format, tokenizer=tokenizer)
  )


def copy_model(source: epath.Path, workdir: epath.Path) -> None:
  """The model folder `source` (a run's) into workdir/model, replaced whole."""
  replace_dir(workdir / layout.MODEL_DIR, lambda where: _copy_files(source, where))


def _copy_files(source: epath.Path, target: epath.Path) -> None:
  """Copy the folder `source` to `target`, file by file (epath has no copytree; a bucket has no
  folders to copy, only objects)."""
  target.mkdir(parents=True, exist_ok=True)
  for item in source.iterdir():
    if item.is_dir():
      _copy_files(item, target / item.name)
    else:
      item.copy(target / item.name, overwrite=True)
