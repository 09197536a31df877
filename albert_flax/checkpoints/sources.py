"""Every checkpoint layout from_pretrained reads, opened into one `Source` in our parameter paths.

    orbax      config.json + params/ (save_pretrained's default)
    workdir    a pretraining workdir's final params/ or its checkpoints/<step>/state/; a
               fine-tuning workdir's model/
    hf         config.json + model.safetensors | pytorch_model.bin (sharded alike)
    tf         albert_config.json + model.ckpt-<step> (Google's and albert_zh's names)
    hub id     huggingface_hub.snapshot_download, then hf

`open_checkpoint(path, step)` finds out which one `path` is; loading.py fits the Source to a model.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from etils import epath
from flax import traverse_util

from albert_flax import paths, workdir
from albert_flax.checkpoints import convert_hf, convert_tf, integrity
from albert_flax.config import AlbertConfig

logger = logging.getLogger("albert_flax.checkpoints")

# What a Hub repository's tokenizer may be: spiece.model, or a WordPiece vocab.txt (Chinese models).
_HUB_TOKENIZER_FILES = [
  workdir.TOKENIZER_FILE,
  workdir.WORDPIECE_VOCAB_FILE,
  workdir.TOKENIZER_CONFIG_FILE,
]


@dataclasses.dataclass
class Source:
  """A checkpoint opened and renamed into our paths, before it meets a model."""

  description: str  # for messages: the file(s) read
  config: AlbertConfig
  # our path -> (source name, array in our layout, whether it was transposed)
  tensors: dict[str, tuple[str, np.ndarray, bool]]
  unknown: list[tuple[str, tuple[int, ...]]]  # source names that are not ALBERT parameters
  architecture: str | None = None


def open_checkpoint(path: str, step: int | str | None = None) -> Source:
  """Find out which layout `path` (local or gs://...) is and read it."""
  directory = paths.path(path)
  if directory.is_dir():
    has_config = (directory / workdir.CONFIG_FILE).is_file()
    model_dir = directory / workdir.MODEL_DIR
    if not has_config and (model_dir / workdir.CONFIG_FILE).is_file():
      return open_checkpoint(os.fspath(model_dir))  # a fine-tuning workdir: its model
    has_checkpoints = (directory / workdir.CHECKPOINTS_DIR).is_dir()
    if has_config and has_checkpoints and step is not None:
      return _open_workdir_step(directory, step)
    if step is not None:
      raise ValueError(f"step={step!r}: {path} is not a pretraining workdir with checkpoints/")
    if has_config and (directory / workdir.ORBAX_PARAMS_DIR).is_dir():
      return _open_orbax(directory, directory / workdir.ORBAX_PARAMS_DIR, subtree=None)
    if has_config and has_checkpoints:
      steps = _workdir_steps(directory / workdir.CHECKPOINTS_DIR)
      status = workdir.read_run_status(path) or {}
      state = status.get("status", "no run status")
      total = status.get("total_steps")
      raise ValueError(
        f"{path} is an unfinished pretraining run ({state}"
        + (f", step {status.get('step')} of {total}" if total else "")
        + f"): it has no final model yet, only checkpoints at steps {steps}. Pass step="
        f"{steps[-1] if steps else 'N'} or step='latest' to load a mid-run checkpoint "
        "(--config.init_from_step= in the programs), or finish the run."
      )
    files = convert_hf.weight_files(directory)
    if files:
      if not has_config:
        raise FileNotFoundError(f"{path} holds weights {files} but no {workdir.CONFIG_FILE}")
      return _open_hf(directory, files)
  found = workdir.find_tf_checkpoint(path)
  if found is not None:
    return _open_tf(*found)
  if directory.exists():
    raise FileNotFoundError(
      f"No ALBERT checkpoint found at {path}: expected {workdir.CONFIG_FILE} with "
      f"{workdir.ORBAX_PARAMS_DIR}/ "
      f"(orbax), {workdir.CHECKPOINTS_DIR}/<step>/{workdir.STATE_ITEM}/ (pretraining workdir), "
      "model.safetensors or pytorch_model.bin (transformers), or albert_config.json with "
      "model.ckpt-*.index (original TF)"
    )
  if re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?", path) and ".." not in path:
    return _open_hf_path(_download(path))
  raise FileNotFoundError(f"No such file or directory: {path}")


def _open_hf_path(directory: str) -> Source:
  files = convert_hf.weight_files(directory)
  if not files or not (paths.path(directory) / workdir.CONFIG_FILE).is_file():
    raise FileNotFoundError(
      f"{directory} has no {workdir.CONFIG_FILE} with model.safetensors or "
      "pytorch_model.bin: not a transformers ALBERT checkpoint"
    )
  return _open_hf(directory, files)


def _download(repo_id: str) -> str:
  """snapshot_download of config, weights and tokenizer; offline or failing -> clear OSError."""
  import huggingface_hub

  offline = paths.hub_offline()
  try:
    directory = huggingface_hub.snapshot_download(
      repo_id,
      allow_patterns=[workdir.CONFIG_FILE, "model.safetensors*", *_HUB_TOKENIZER_FILES],
      local_files_only=offline,
    )
    if not convert_hf.weight_files(directory):  # an older repository: PyTorch pickles only
      directory = huggingface_hub.snapshot_download(
        repo_id,
        allow_patterns=[workdir.CONFIG_FILE, "pytorch_model.bin*", *_HUB_TOKENIZER_FILES],
        local_files_only=offline,
      )
  except Exception as e:  # offline, unknown repo, no network: all mean "could not get it"
    hint = (
      " HF_HUB_OFFLINE is set and the model is not in the local Hugging Face cache: "
      "download it while online (`huggingface-cli download " + repo_id + "`) or pass a "
      "local directory."
      if offline
      else " Check the id and your network, or pass a local directory."
    )
    raise OSError(
      f"{repo_id!r} is not a local path, and getting it from the Hugging Face Hub "
      f"failed ({type(e).__name__}: {e}).{hint}"
    ) from None
  return directory


# ------------------------------------------------------------------------ the formats


def _open_hf(directory: str | epath.Path, files: list[str]) -> Source:
  config_path = paths.path(directory) / workdir.CONFIG_FILE
  config = AlbertConfig.from_json_file(config_path)
  architecture = _architecture(config_path)
  state = convert_hf.read_weight_files(files)
  # The decoder is tied to the word table and to predictions.bias; keep ours, check theirs.
  decoder_weight = state.pop(convert_hf.TIED_DECODER_WEIGHT, None)
  decoder_bias = state.pop(convert_hf.TIED_DECODER_BIAS, None)
  word = state.get(
    "albert.embeddings.word_embeddings.weight", state.get("embeddings.word_embeddings.weight")
  )
  if decoder_weight is not None and word is not None and not np.array_equal(decoder_weight, word):
    logger.warning(
      "%s: predictions.decoder.weight differs from the word embeddings; ALBERT ties "
      "them, the word embeddings are used",
      directory,
    )
  if decoder_bias is not None:
    if "predictions.bias" not in state:
      state["predictions.bias"] = decoder_bias
    elif not np.array_equal(decoder_bias, state["predictions.bias"]):
      logger.warning(
        "%s: predictions.decoder.bias differs from predictions.bias; the latter is used", directory
      )
  tensors, unknown = {}, []
  for name, array in state.items():
    if convert_hf.is_ignored(name):
      continue
    mapped = convert_hf.hf_name_to_path(name)
    if mapped is None:
      unknown.append((name, tuple(array.shape)))
      continue
    our_path, transpose = mapped
    tensors[our_path] = (name, array.T if transpose else array, transpose)
  return Source(", ".join(files), config, tensors, unknown, architecture)


def _open_tf(prefix: str, config_path: str) -> Source:
  # Google's layout or albert_zh's, in our paths.
  config, tensors, unknown = convert_tf.read_original(prefix, config_path)
  if "classifier/kernel" in tensors:
    # albert_config.json stores no num_labels: the classifier's width is the only record of it.
    config = config.replace(num_labels=int(tensors["classifier/kernel"][1].shape[-1]))
  return Source(prefix, config, tensors, unknown, architecture=None)


def _workdir_steps(checkpoints_dir: epath.Path) -> list[int]:
  """The complete checkpoints' steps, ascending."""
  return sorted(
    int(d.name)
    for d in checkpoints_dir.iterdir()
    if d.name.isdigit() and (d / workdir.STATE_ITEM).is_dir()
  )


def _open_workdir_step(directory: epath.Path, step: int | str) -> Source:
  """A pretraining workdir's checkpoint of `step`, or with "latest" the newest that reads back:
  an unreadable newest one is skipped with a warning, as a resuming run does."""
  checkpoints_dir = directory / workdir.CHECKPOINTS_DIR
  steps = _workdir_steps(checkpoints_dir)
  if not steps:
    raise FileNotFoundError(f"{checkpoints_dir} holds no <step>/{workdir.STATE_ITEM}/ checkpoint")
  if step != "latest":
    if not isinstance(step, int) or step not in steps:
      raise ValueError(f"step={step!r}: {checkpoints_dir} holds the steps {steps} (or 'latest')")
    candidates = [step]
  else:
    candidates = steps[::-1]
  for i, candidate in enumerate(candidates):
    item = checkpoints_dir / str(candidate) / workdir.STATE_ITEM
    try:
      return _open_orbax(directory, item, subtree="params")
    except ValueError as e:
      if i + 1 == len(candidates):
        raise
      logger.warning(
        "checkpoint at step %d cannot be read (%s); loading the previous one",
        candidate,
        short_reason(e),
      )
  raise AssertionError("unreachable")


def _open_orbax(directory: epath.Path, item_dir: epath.Path, subtree: str | None) -> Source:
  """Our own parameter names: restore (only the params of a train state) as numpy arrays."""
  import orbax.checkpoint as ocp

  config_path = directory / workdir.CONFIG_FILE
  config = AlbertConfig.from_json_file(config_path)
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    tree = checkpointer.metadata(item_dir).item_metadata.tree
    if subtree is not None:
      if not isinstance(tree, Mapping) or subtree not in tree:
        raise ValueError(
          f"the saved state has no {subtree!r} entry (keys: "
          f"{sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__})"
        )
      tree = {subtree: tree[subtree]}
    item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    restore_args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restored = checkpointer.restore(
      item_dir,
      args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=subtree is not None
      ),
    )
  except Exception as e:
    raise ValueError(
      f"Could not read the orbax checkpoint {item_dir}: it is corrupt, incomplete "
      f"or not a parameter tree ({type(e).__name__}: {e})"
    ) from None
  _verify_orbax(directory, item_dir, subtree, restored)
  if subtree is not None:
    restored = restored[subtree]
  tensors, unknown = {}, []
  for key, array in traverse_util.flatten_dict(_unwrap_boxes(restored)).items():
    our_path = "/".join(str(k) for k in key)
    if convert_hf.is_albert_path(our_path):
      tensors[our_path] = (our_path, np.asarray(array), False)
    else:
      unknown.append((our_path, tuple(np.shape(array))))
  return Source(os.fspath(item_dir), config, tensors, unknown, _architecture(config_path))


def _verify_orbax(
  directory: epath.Path, item_dir: epath.Path, subtree: str | None, restored: Any
) -> None:
  """Check the restored arrays against the integrity record written with them (if any: older
  saves have none)."""
  if subtree is None:
    record = integrity.read_record(directory / workdir.INTEGRITY_FILE)
  else:  # a training checkpoint: <step>/integrity/ holds the whole state's record
    record = _read_json_item(item_dir.parent / workdir.INTEGRITY_ITEM)
    if record is not None:
      record = {k: v for k, v in record.items() if k.startswith(subtree + "/")}
  if record:
    integrity.verify(record, restored, item_dir)


def _read_json_item(item_dir: epath.Path) -> dict | None:
  """An orbax JsonSave item's content, or None when the item is absent."""
  if not item_dir.is_dir():
    return None
  import orbax.checkpoint as ocp

  return ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(item_dir)


def _unwrap_boxes(tree):
  """A saved nn.Partitioned box is {"value": array}: keep the array."""
  if isinstance(tree, Mapping):
    if set(tree) == {"value"} and not isinstance(tree["value"], Mapping):
      return tree["value"]
    return {k: _unwrap_boxes(v) for k, v in tree.items()}
  return tree


def _architecture(config_path: epath.Path) -> str | None:
  architectures = paths.read_json(config_path).get("architectures") or [None]
  return architectures[0]


# --------------------------------------------------------------- meeting the model


def short_reason(error: BaseException, limit: int = 200) -> str:
  """An error in one short line for a log: its type and first line, with the long JSON specs
  orbax and TensorStore put in their messages cut to "{...}"."""
  text = (str(error).strip().splitlines() or [""])[0]
  kept, depth = [], 0
  for char in text:  # every outermost {...} becomes "{...}"
    if char == "{":
      depth += 1
      if depth == 1:
        kept.append("{...}")
    elif char == "}" and depth:
      depth -= 1
    elif not depth:
      kept.append(char)
  text = "".join(kept).strip()
  if len(text) > limit:
    text = text[: limit - 3].rstrip() + "..."
  return f"{type(error).__name__}: {text}" if text else type(error).__name__
