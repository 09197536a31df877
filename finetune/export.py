"""The fine-tuned model, written: orbax in workdir/model (and transformers' format in
workdir/hf with config.export_hf), each replaced whole so a reader never sees half a model."""

from __future__ import annotations

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
    host_params = gather(best_params)  # every process takes part; process 0 writes
    if lead:
      _export(model, host_params, tokenizer, workdir / layout.HF_EXPORT_DIR, "hf")


def _export(model, params, tokenizer, path: epath.Path, format: str) -> None:
  """save_pretrained into `path`, replaced whole (`paths.replacing`)."""
  with paths.replacing(path, folder=True) as tmp:
    af.save_pretrained(tmp, model, params, format=format, tokenizer=tokenizer)


def copy_model(source: epath.Path, workdir: epath.Path) -> None:
  """The model folder `source` (a run's) into workdir/model, replaced whole."""
  with paths.replacing(workdir / layout.MODEL_DIR, folder=True) as tmp:
    _copy_files(source, tmp)


def _copy_files(source: epath.Path, target: epath.Path) -> None:
  """Copy the folder `source` to `target`, file by file (epath has no copytree; a bucket has no
  folders to copy, only objects)."""
  target.mkdir(parents=True, exist_ok=True)
  for item in source.iterdir():
    if item.is_dir():
      _copy_files(item, target / item.name)
    else:
      item.copy(target / item.name, overwrite=True)
