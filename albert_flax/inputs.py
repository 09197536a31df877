"""Input validation at the model's boundary: shapes always, id ranges whenever the arrays are
concrete (an out-of-range gather on device is clamped by XLA, not reported)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from albert_flax.config import AlbertConfig


def _is_traced(x: Any) -> bool:
  return isinstance(x, jax.core.Tracer)


def validate_inputs(
  config: AlbertConfig,
  input_ids: Any,
  attention_mask: Any = None,
  token_type_ids: Any = None,
  position_ids: Any = None,
) -> None:
  """Raise ValueError on inputs XLA would otherwise accept silently.

  Shapes are always checked. Values (ids in [0, vocab_size), token types in [0, type_vocab_size),
  positions in [0, max_position_embeddings)) are checked whenever the arrays are concrete, i.e.
  outside `jax.jit`; a jitted program should call this on its host batch before the step
  (the training programs do), since an out-of-range gather on device is clamped, not reported.

  Args:
    input_ids: [batch, seq] token ids.
    attention_mask, token_type_ids, position_ids: [batch, seq] or None.
  """
  shape = tuple(np.shape(input_ids))
  if len(shape) != 2:
    raise ValueError(f"input_ids must be [batch, seq], got shape {shape}")
  if shape[1] > config.max_position_embeddings:
    raise ValueError(
      f"sequence length {shape[1]} exceeds max_position_embeddings "
      f"{config.max_position_embeddings}; truncate the input"
    )
  for name, value in (
    ("attention_mask", attention_mask),
    ("token_type_ids", token_type_ids),
    ("position_ids", position_ids),
  ):
    if value is not None and tuple(np.shape(value)) != shape:
      raise ValueError(f"{name} has shape {tuple(np.shape(value))} but input_ids has {shape}")
  for name, value, upper in (
    ("input_ids", input_ids, config.vocab_size),
    ("token_type_ids", token_type_ids, config.type_vocab_size),
    ("position_ids", position_ids, config.max_position_embeddings),
  ):
    if value is None or _is_traced(value) or np.size(value) == 0:
      continue
    host = np.asarray(value)
    if not np.issubdtype(host.dtype, np.integer):
      raise ValueError(f"{name} must hold integers, got dtype {host.dtype}")
    low, high = int(host.min()), int(host.max())
    if low < 0 or high >= upper:
      bad = host[(host < 0) | (host >= upper)]
      raise ValueError(
        f"{name} holds values outside [0, {upper}): e.g. {bad[:5].tolist()}"
        + (" (vocab_size of the config)" if name == "input_ids" else "")
      )
