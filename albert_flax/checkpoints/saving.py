"""save_pretrained: a model's parameters as an orbax, transformers or original TF1 checkpoint.

    af.save_pretrained("out/", model, params)                 # orbax: config.json + params/
    af.save_pretrained("out/", model, params, format="hf")    # config.json + model.safetensors
    af.save_pretrained("out/", model, params, format="tf", tokenizer=tok)  # albert_config.json

Every format is read back by `af.from_pretrained` (checkpoints/loading.py); "hf" by transformers'
AlbertFor*.from_pretrained, "tf" by google-research/albert. Each also gets a README.md model card.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from etils import epath
from flax import traverse_util

from albert_flax import paths, workdir
from albert_flax.checkpoints import convert_hf, convert_tf, integrity, model_card
from albert_flax.checkpoints.loading import FIXED_TWO_LABELS, expected_shapes, resolve_model_class
from albert_flax.config import AlbertConfig

FORMATS = ("orbax", "hf", "tf")


def save_pretrained(
  path: str | os.PathLike,
  model: nn.Module,
  params: Mapping,
  format: str = "orbax",
  *,
  tokenizer: Any = None,
) -> str:
  """Write `params` of `model` to the directory `path`.

  format: "orbax" (config.json + params/), "hf" (config.json + model.safetensors, loadable by
  transformers' AlbertFor*.from_pretrained) or "tf" (albert_config.json + model.ckpt-0, the
  original google-research/albert layout). `tokenizer`: a spiece.model or vocab.txt path, or an
  AlbertTokenizer / WordPieceTokenizer, written so that `af.load_tokenizer(path)` reloads it.
  Also writes a README.md model card (`albert_flax.checkpoints.model_card`). Returns `path`.
  "hf"/"tf" gather the arrays to host.
  """
  if format not in FORMATS:
    raise ValueError(f"format must be 'orbax', 'hf' or 'tf', got {format!r}")
  directory = paths.path(path)
  architecture = resolve_model_class(type(model)).__name__
  config: AlbertConfig = model.config
  if format != "orbax" and config.cross_layer_sharing != "all":
    raise ValueError(
      f"format={format!r} cannot hold cross_layer_sharing={config.cross_layer_sharing!r} "
      "(transformers' and the original TF layouts share all of a layer or nothing); save it "
      'with format="orbax"'
    )
  if isinstance(params, Mapping) and set(params) == {"params"}:  # a variables dict
    params = params["params"]
  flat = flat_parameters(params)
  check_parameters(flat, expected_shapes(model), architecture)
  if format == "tf":  # what can fail, before any file: a failed export leaves nothing behind
    convert_tf.require_tensorflow()
    original_config = convert_tf.original_config_dict(config)
  directory.mkdir(parents=True, exist_ok=True)
  if format == "orbax":
    _save_orbax(directory, config, architecture, params)
  elif format == "hf":
    config = _save_hf(directory, config, architecture, flat)
  else:
    _save_tf(directory, original_config, flat)
  if tokenizer is not None and jax.process_index() == 0:
    _save_tokenizer(tokenizer, directory)
  if jax.process_index() == 0:  # README.md: architecture, parameter counts, training, limits
    shapes = {p: tuple(np.shape(v)) for p, v in flat.items()}
    model_card.write_model_card(directory, config, architecture, shapes, format)
  return os.fspath(directory)


def _save_orbax(
  directory: epath.Path, config: AlbertConfig, architecture: str, params: Mapping
) -> None:
  """config.json, params/ (orbax) and the arrays' fingerprints (integrity.json)."""
  import orbax.checkpoint as ocp  # heavy; only this format needs it

  # The small files are written once, by the first process (every process of a multi-host run
  # saves: each writes its own shards of the arrays, one object per file in a bucket).
  if jax.process_index() == 0:
    config.to_json_file(directory / workdir.CONFIG_FILE, architecture)
  checkpointer = ocp.StandardCheckpointer()
  unboxed = nn.meta.unbox(dict(params))
  checkpointer.save(directory / workdir.ORBAX_PARAMS_DIR, unboxed, force=True)
  checkpointer.wait_until_finished()
  # After the arrays: a record without its arrays is never left behind. Every process takes part
  # in fingerprinting (the arrays may be sharded over processes); the first one writes.
  record = integrity.fingerprints(unboxed)
  if jax.process_index() == 0:
    integrity.write_record(directory / workdir.INTEGRITY_FILE, record)


def _save_hf(
  directory: epath.Path, config: AlbertConfig, architecture: str, flat: dict
) -> AlbertConfig:
  """config.json + model.safetensors in transformers' names; returns the config written."""
  if architecture in FIXED_TWO_LABELS:  # transformers sizes these heads by num_labels
    config = config.replace(num_labels=2, label_names=None, problem_type=None)
  config.to_json_file(directory / workdir.CONFIG_FILE, architecture)
  bare = architecture == "AlbertModel"
  tensors = {}
  for our_path, value in flat.items():
    name, transpose = convert_hf.path_to_hf_name(our_path, bare=bare)
    array = np.asarray(jax.device_get(value))
    tensors[name] = array.T if transpose else array
  if "predictions.bias" in tensors:  # the tied decoder, as transformers lays it out
    tensors[convert_hf.TIED_DECODER_WEIGHT] = tensors["albert.embeddings.word_embeddings.weight"]
    tensors[convert_hf.TIED_DECODER_BIAS] = tensors["predictions.bias"]
  convert_hf.write_safetensors(directory / "model.safetensors", tensors)
  return config


def _save_tf(directory: epath.Path, original_config: dict, flat: dict) -> None:
  """model.ckpt-0 in the original's variable names, then albert_config.json."""
  tensors = {}
  for our_path, value in flat.items():
    name, transpose = convert_tf.path_to_tf_name(our_path)
    array = np.asarray(jax.device_get(value), dtype=np.float32)  # the original reads float32
    tensors[name] = array.T if transpose else array
  convert_tf.write_checkpoint(directory, tensors)
  # Last: the config is what marks the folder as a TF checkpoint (workdir.find_tf_checkpoint).
  paths.write_json(directory / "albert_config.json", original_config, indent=2)


def flat_parameters(params: Mapping) -> dict[str, Any]:
  """The unboxed parameter tree as {"a/b/kernel": array} (a variables dict's "params" taken)."""
  if isinstance(params, Mapping) and set(params) == {"params"}:
    params = params["params"]
  return {
    "/".join(k): v for k, v in traverse_util.flatten_dict(nn.meta.unbox(dict(params))).items()
  }


def check_parameters(flat: dict, expected: dict, target: str) -> None:
  """One ValueError naming every parameter of `flat` that `target`'s `expected` shapes lack,
  every one they need that is missing, and every shape that differs."""
  problems = [f"{p}: not a parameter of {target}" for p in flat if p not in expected]
  problems += [f"{p}: missing" for p in expected if p not in flat]
  problems += [
    f"{p}: shape {list(np.shape(flat[p]))}, the model needs {list(expected[p].shape)}"
    for p in flat
    if p in expected and tuple(np.shape(flat[p])) != expected[p].shape
  ]
  if problems:
    raise ValueError(f"params do not belong to this {target}:\n  " + "\n  ".join(problems))


def _save_tokenizer(tokenizer: Any, directory: epath.Path) -> None:
  """The vocabulary the model goes with, as `af.load_tokenizer` finds it: a tokenizer writes
  itself (spiece.model or vocab.txt, and tokenizer_config.json naming its class); a file (local
  or gs://...) is copied as spiece.model (a *.model) or vocab.txt (a WordPiece vocabulary)."""
  if isinstance(tokenizer, (str, os.PathLike)):
    source = paths.path(tokenizer)
    if not source.is_file():
      raise FileNotFoundError(f"tokenizer file {tokenizer} does not exist")
    target = directory / (
      workdir.TOKENIZER_FILE if source.suffix == ".model" else workdir.WORDPIECE_VOCAB_FILE
    )
    if source != target:
      paths.write_bytes(target, source.read_bytes())
  elif hasattr(tokenizer, "save_pretrained"):
    tokenizer.save_pretrained(directory)
  elif hasattr(tokenizer, "save_vocabulary"):
    tokenizer.save_vocabulary(directory)
  else:
    raise TypeError(
      "tokenizer must be a spiece.model or vocab.txt path, an AlbertTokenizer or a "
      f"WordPieceTokenizer, got {type(tokenizer).__name__}"
    )
