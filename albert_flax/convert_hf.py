"""transformers' ALBERT state-dict names <-> this package's parameter tree, and HF weight files.

A transformers checkpoint is a flat {name: tensor} dict (`albert.encoder.albert_layer_groups.0.
albert_layers.0.ffn.weight` ...). Our tree is nested with '/'-joined paths
(`albert/encoder/albert_layer_groups_0/albert_layers_0/ffn/kernel`). The two differ in:
  - PyTorch Linear.weight is [out, in]; a flax Dense kernel is [in, out]: transposed;
  - LayerNorm weight -> scale, Embedding weight -> embedding;
  - the MLM decoder: transformers stores `predictions.decoder.{weight,bias}` tied to the word
    table and `predictions.bias`; we hold the word table and `predictions/bias` only.
A bare `AlbertModel` saved by transformers has no `albert.` prefix; we read both forms and write
the bare form for `AlbertModel` (what transformers writes).

Reading uses safetensors' numpy API (no torch needed); `pytorch_model.bin` needs torch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable

import numpy as np

# One row per module: (our path, transformers' module name, kind). {g}/{i}: group / inner layer.
# kind: "dense" (weight [out, in] <-> kernel [in, out], bias), "ln" (weight <-> scale, bias),
# "embed" (weight <-> embedding), "bias" (a bare bias vector under the module name).
_OURS_LAYER = "albert/encoder/albert_layer_groups_{g}/albert_layers_{i}/"
_HF_LAYER = "albert.encoder.albert_layer_groups.{g}.albert_layers.{i}."
MODULES: tuple[tuple[str, str, str], ...] = (
  ("albert/embeddings/word_embeddings", "albert.embeddings.word_embeddings", "embed"),
  ("albert/embeddings/position_embeddings", "albert.embeddings.position_embeddings", "embed"),
  ("albert/embeddings/token_type_embeddings", "albert.embeddings.token_type_embeddings", "embed"),
  ("albert/embeddings/LayerNorm", "albert.embeddings.LayerNorm", "ln"),
  (
    "albert/encoder/embedding_hidden_mapping_in",
    "albert.encoder.embedding_hidden_mapping_in",
    "dense",
  ),
  (_OURS_LAYER + "attention/query", _HF_LAYER + "attention.query", "dense"),
  (_OURS_LAYER + "attention/key", _HF_LAYER + "attention.key", "dense"),
  (_OURS_LAYER + "attention/value", _HF_LAYER + "attention.value", "dense"),
  (_OURS_LAYER + "attention/dense", _HF_LAYER + "attention.dense", "dense"),
  (_OURS_LAYER + "attention/LayerNorm", _HF_LAYER + "attention.LayerNorm", "ln"),
  (_OURS_LAYER + "ffn", _HF_LAYER + "ffn", "dense"),
  (_OURS_LAYER + "ffn_output", _HF_LAYER + "ffn_output", "dense"),
  (_OURS_LAYER + "full_layer_layer_norm", _HF_LAYER + "full_layer_layer_norm", "ln"),
  ("albert/pooler", "albert.pooler", "dense"),
  ("predictions/dense", "predictions.dense", "dense"),
  ("predictions/LayerNorm", "predictions.LayerNorm", "ln"),
  ("predictions", "predictions", "bias"),
  ("sop_classifier/classifier", "sop_classifier.classifier", "dense"),
  ("classifier", "classifier", "dense"),
  ("qa_outputs", "qa_outputs", "dense"),
)
# (our leaf, transformers' leaf, transpose) per kind.
_LEAVES = {
  "dense": (("kernel", "weight", True), ("bias", "bias", False)),
  "ln": (("scale", "weight", False), ("bias", "bias", False)),
  "embed": (("embedding", "weight", False),),
  "bias": (("bias", "bias", False),),
}
# Names transformers writes that carry nothing of ours: buffers, and the decoder tied to the word
# table and to predictions.bias (checked against them on load, see `split_tied`).
_BUFFERS = ("albert.embeddings.position_ids",)
TIED_DECODER_WEIGHT = "predictions.decoder.weight"
TIED_DECODER_BIAS = "predictions.decoder.bias"
_BARE_PREFIXES = ("embeddings.", "encoder.", "pooler.")


def _template_regex(template: str) -> str:
  escaped = re.escape(template).replace(r"\{g\}", "{g}").replace(r"\{i\}", "{i}")
  return escaped.replace("{g}", r"(?P<g>\d+)").replace("{i}", r"(?P<i>\d+)")


def _build_rules():
  """[(hf regex, our template, transpose)] and [(our regex, hf template, transpose)]."""
  forward, backward = [], []
  for ours, hf, kind in MODULES:
    for our_leaf, hf_leaf, transpose in _LEAVES[kind]:
      hf_name, our_path = f"{hf}.{hf_leaf}", f"{ours}/{our_leaf}"
      forward.append((re.compile(_template_regex(hf_name) + "$"), our_path, transpose))
      backward.append((re.compile(_template_regex(our_path) + "$"), hf_name, transpose))
  return forward, backward


_FORWARD, _BACKWARD = _build_rules()


def hf_name_to_path(name: str) -> tuple[str, bool] | None:
  """transformers' tensor name -> (our '/'-joined path, transpose?), or None if not ALBERT's."""
  if name.startswith(_BARE_PREFIXES):
    name = "albert." + name
  for regex, template, transpose in _FORWARD:
    m = regex.match(name)
    if m:
      return template.format(**m.groupdict()), transpose
  return None


def path_to_hf_name(path: str, bare: bool = False) -> tuple[str, bool]:
  """Our '/'-joined path -> (transformers' name, transpose?). `bare`: no `albert.` prefix."""
  for regex, template, transpose in _BACKWARD:
    m = regex.match(path)
    if m:
      name = template.format(**m.groupdict())
      if bare and name.startswith("albert."):
        name = name[len("albert.") :]
      return name, transpose
  raise ValueError(f"Parameter {path!r} has no transformers name (not an ALBERT parameter)")


def is_albert_path(path: str) -> bool:
  """Whether our '/'-joined `path` names a parameter of some ALBERT model."""
  return any(regex.match(path) for regex, _, _ in _BACKWARD)


def is_ignored(name: str) -> bool:
  """Buffers transformers may store that are not parameters."""
  return name in _BUFFERS or ("albert." + name) in _BUFFERS


# ----------------------------------------------------------------------------- files


def weight_files(directory: str) -> list[str]:
  """The weight files of a transformers directory, preferring safetensors; [] if none."""
  for single, index in (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
  ):
    if os.path.isfile(os.path.join(directory, single)):
      return [os.path.join(directory, single)]
    index_path = os.path.join(directory, index)
    if os.path.isfile(index_path):
      try:
        with open(index_path, encoding="utf-8") as f:
          weight_map = json.load(f)["weight_map"]
      except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"Could not read the shard index {index_path}: {e}") from None
      files = [os.path.join(directory, name) for name in sorted(set(weight_map.values()))]
      missing = [f for f in files if not os.path.isfile(f)]
      if missing:
        raise FileNotFoundError(f"{index_path} lists shard(s) that do not exist: {missing}")
      return files
  return []


def read_weight_files(files: Iterable[str]) -> dict[str, np.ndarray]:
  """{name: numpy array} from .safetensors / .bin files. A damaged file raises naming it."""
  state: dict[str, np.ndarray] = {}
  for path in files:
    try:
      if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        part = load_file(path)
      else:
        part = _read_torch_bin(path)
    except ImportError:
      raise
    except Exception as e:  # safetensors / pickle / zip errors all mean: this file is unreadable
      raise ValueError(
        f"Could not read checkpoint file {path}: it is corrupt, truncated or not a "
        f"weight file ({type(e).__name__}: {e})"
      ) from None
    state.update(part)
  return state


def _read_torch_bin(path: str) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError:
    raise ImportError(
      f"Reading {path} (a PyTorch pickle) needs torch: `pip install torch`, or "
      "save the checkpoint as safetensors"
    ) from None
  loaded = torch.load(path, map_location="cpu", weights_only=True)
  # bfloat16 has no numpy dtype in torch's .numpy(): go through float32 (exact).
  return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in loaded.items()}


def write_safetensors(path: str, tensors: dict[str, np.ndarray]) -> None:
  """Write `tensors` as transformers reads them (metadata format "pt")."""
  from safetensors.numpy import save_file

  save_file(
    {k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata={"format": "pt"}
  )
