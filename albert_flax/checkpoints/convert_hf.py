"""transformers' ALBERT state-dict names <-> this package's parameter tree, and HF weight files.

A transformers checkpoint is a flat {name: tensor} dict (`albert.encoder.albert_layer_groups.0.
albert_layers.0.ffn.weight` ...). Our tree is nested with '/'-joined paths
(`albert/encoder/albert_layer_groups_0/albert_layers_0/ffn/kernel`). The two differ in:
  - PyTorch Linear.weight is [out, in]; a flax Dense kernel is [in, out]: transposed;
  - LayerNorm weight -> scale, Embedding weight -> embedding;
  - the MLM decoder: transformers stores `predictions.decoder.{weight,bias}` tied to the word
    table and `predictions.bias`; we hold the word table and `predictions/bias` only.
The name table is `name_maps.HF_NAMES`. A bare `AlbertModel` saved by transformers has no
`albert.` prefix; we read both forms and write the bare form for `AlbertModel` (what transformers
writes).

Reading uses safetensors' numpy API (no torch needed); `pytorch_model.bin` needs torch.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

import numpy as np

from albert_flax import paths
from albert_flax.checkpoints.name_maps import HF_NAMES

# Names transformers writes that carry nothing of ours: buffers, and the decoder tied to the word
# table and to predictions.bias (checked against them on load, see `split_tied`).
_BUFFERS = ("albert.embeddings.position_ids",)
TIED_DECODER_WEIGHT = "predictions.decoder.weight"
TIED_DECODER_BIAS = "predictions.decoder.bias"
_BARE_PREFIXES = ("embeddings.", "encoder.", "pooler.")


def hf_name_to_path(name: str) -> tuple[str, bool] | None:
  """transformers' tensor name -> (our '/'-joined path, transpose?), or None if not ALBERT's."""
  if name.startswith(_BARE_PREFIXES):
    name = "albert." + name
  return HF_NAMES.to_ours(name)


def path_to_hf_name(path: str, bare: bool = False) -> tuple[str, bool]:
  """Our '/'-joined path -> (transformers' name, transpose?). `bare`: no `albert.` prefix."""
  mapped = HF_NAMES.to_theirs(path)
  if mapped is not None:
    name, transpose = mapped
    if bare and name.startswith("albert."):
      name = name[len("albert.") :]
    return name, transpose
  raise ValueError(f"Parameter {path!r} has no transformers name (not an ALBERT parameter)")


def is_albert_path(path: str) -> bool:
  """Whether our '/'-joined `path` names a parameter of some ALBERT model."""
  return HF_NAMES.knows_path(path)


def is_ignored(name: str) -> bool:
  """Buffers transformers may store that are not parameters."""
  return name in _BUFFERS or ("albert." + name) in _BUFFERS


# ----------------------------------------------------------------------------- files


def weight_files(directory: str | os.PathLike) -> list[str]:
  """The weight files of a transformers directory (local or gs://...), preferring safetensors;
  [] if none."""
  directory = paths.path(directory)
  for single, index in (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
  ):
    if (directory / single).is_file():
      return [os.fspath(directory / single)]
    index_path = directory / index
    if index_path.is_file():
      try:
        weight_map = paths.read_json(index_path)["weight_map"]
      except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"Could not read the shard index {index_path}: {e}") from None
      files = [directory / name for name in sorted(set(weight_map.values()))]
      missing = [os.fspath(f) for f in files if not f.is_file()]
      if missing:
        raise FileNotFoundError(f"{index_path} lists shard(s) that do not exist: {missing}")
      return [os.fspath(f) for f in files]
  return []


def read_weight_files(files: Iterable[str]) -> dict[str, np.ndarray]:
  """{name: numpy array} from .safetensors / .bin files (local or gs://...). A damaged file raises
  naming it."""
  state: dict[str, np.ndarray] = {}
  for path in files:
    try:
      if path.endswith(".safetensors"):
        from safetensors import numpy as safetensors_numpy

        if paths.is_local(path):
          part = safetensors_numpy.load_file(path)  # memory-mapped
        else:
          part = safetensors_numpy.load(paths.path(path).read_bytes())
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
  source = path if paths.is_local(path) else io.BytesIO(paths.path(path).read_bytes())
  loaded = torch.load(source, map_location="cpu", weights_only=True)
  # bfloat16 has no numpy dtype in torch's .numpy(): go through float32 (exact).
  return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in loaded.items()}


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray]) -> None:
  """Write `tensors` as transformers reads them (metadata format "pt"), local or gs://..."""
  from safetensors import numpy as safetensors_numpy

  contiguous = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
  if paths.is_local(path):
    safetensors_numpy.save_file(contiguous, os.fspath(path), metadata={"format": "pt"})
  else:  # one object upload
    paths.write_bytes(path, safetensors_numpy.save(contiguous, metadata={"format": "pt"}))
