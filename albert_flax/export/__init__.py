"""Inference artifacts: `af.export(model, params, out_dir, format=...)`.

Formats: "stablehlo" (jax.export), "onnx" (onnxruntime), "saved_model" (TF serving), "litert"
(mobile). Every one takes int32 token ids with any batch size and any length up to the longest
(`max_seq_length`, default max_position_embeddings); each folder also holds the tokenizer, the
config and a README on calling it without albert_flax (artifacts.py). The command:

    python -m albert_flax.export --model=DIR|WORKDIR --format=onnx --out=DIR [--head=...]

A model from `af.quantize` exports with its int8 weights. The converters and runtimes are the
`export` extra (pip install -e '.[export]'), imported only when a format needs them.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

from albert_flax.export import artifacts, converters, serving
from albert_flax.export.converters import MissingExtraError

FORMATS = ("stablehlo", "onnx", "saved_model", "litert")
_CONVERTERS = {
  "stablehlo": converters.to_stablehlo,
  "onnx": converters.to_onnx,
  "saved_model": converters.to_saved_model,
  "litert": converters.to_litert,
}

__all__ = ["FORMATS", "MissingExtraError", "export"]


def export(
  model: Any,
  params: Any,
  out_dir: str | os.PathLike,
  format: str = "stablehlo",  # noqa: A002 (the public keyword, as in save_pretrained)
  *,
  max_seq_length: int | None = None,
  tokenizer: Any = None,
) -> str:
  """Write `model` with `params` as an inference artifact in `out_dir`; returns its path.

  Args:
    model: a task model (`af.AlbertForSequenceClassification(cfg)`, ...) or the model from
      `af.quantize`.
    params: its parameters ({"params": ...} or the inner tree; boxed or plain).
    out_dir: a local folder (created).
    format: one of FORMATS.
    max_seq_length: the longest input the artifact takes (default max_position_embeddings).
    tokenizer: an `AlbertTokenizer` / `WordPieceTokenizer` to save beside it.

  Raises:
    ValueError: an unknown format or a max_seq_length beyond the model's positions.
    MissingExtraError: the format's converter is not installed (names the extra).
  """
  if format not in FORMATS:
    raise ValueError(f"unknown export format {format!r}; choose one of {list(FORMATS)}")
  if isinstance(params, dict) and set(params) == {"params"}:
    params = params["params"]
  params = serving.plain_params(params)
  serving.input_specs(model, max_seq_length)  # checks max_seq_length before any work
  out_dir = os.fspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  path = _CONVERTERS[format](model, params, out_dir, max_seq_length)
  artifacts.write_beside(
    out_dir, format, model, max_seq_length, converters.is_quantized(params), tokenizer
  )
  return path


class _CallableModule(types.ModuleType):
  """This package called as a function is `export`: importing `albert_flax.export` (as the
  command does) binds the package itself to the name `af.export`, which must stay callable."""

  def __call__(self, *args: Any, **kwargs: Any) -> str:
    return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
