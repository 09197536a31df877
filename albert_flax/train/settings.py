"""The checks of the settings both programs share, run before any work.

Pretraining and fine-tuning configs name the same ideas the same way (learning_rate,
warmup_steps, batch_size, max_seq_length, the optimizer, dtypes, the mesh); only the number of
steps differs (`num_train_steps` / `train_steps`). `problems(config, steps_key)` lists every value
that cannot work, and `check` raises one ConfigError (exit status 2, one line, no traceback)
naming them all, so a negative learning rate is refused by both programs alike and before a
tokenizer is trained, data read or a checkpoint loaded. `model_problems` checks the settings
against the model's config (read without its weights: `AlbertConfig.from_pretrained`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from albert_flax import paths
from albert_flax.config import REMAT_POLICIES, AlbertConfig
from albert_flax.train.mistakes import ConfigError
from albert_flax.train.optim import OPTIMIZERS

DTYPES = ("float32", "bfloat16", "float16")
MESH_AXES = ("data", "fsdp", "tensor")


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def problems(
  config: Any,
  steps_key: str,
  zero_means_default: Iterable[str] = (),
  warmup_within_steps: bool = False,
) -> list[str]:
  """Every shared setting of `config` (a ConfigDict) that cannot work, one phrase each.

  steps_key: the program's number of training steps ("num_train_steps" or "train_steps").
  zero_means_default: keys whose 0 picks a default (fine-tuning's eval_every_steps).
  warmup_within_steps: refuse a warm-up longer than the run (fine-tuning; a short pretraining
  run of a config with a long warm-up is a legitimate smoke test).
  """
  found = []
  zero_ok = set(zero_means_default)
  positive = (steps_key, "batch_size", "max_seq_length", "grad_accum_steps", "log_every_steps")
  for key in (*positive, "eval_every_steps"):
    if key not in config:
      continue
    value, least = config[key], 0 if key in zero_ok else 1
    if not _is_int(value) or value < least:
      what = "an int >= 0" if least == 0 else "a positive int"
      found.append(f"{key} must be {what}, got {value!r}")
  if "learning_rate" in config and not (
    _is_number(config.learning_rate) and config.learning_rate > 0
  ):
    found.append(f"learning_rate must be a positive number, got {config.learning_rate!r}")
  warmup = config.get("warmup_steps")
  if warmup is not None and (not _is_int(warmup) or warmup < 0):
    found.append(f"warmup_steps must be an int >= 0, got {warmup!r}")
  elif warmup_within_steps and _is_int(config.get(steps_key)) and warmup > config[steps_key]:
    found.append(f"warmup_steps {warmup} exceeds {steps_key} {config[steps_key]}")
  for key in ("weight_decay", "grad_clip_norm"):  # grad_clip_norm 0 turns clipping off
    if key in config and not (_is_number(config[key]) and config[key] >= 0):
      found.append(f"{key} must be a number >= 0, got {config[key]!r}")
  if "optimizer" in config and config.optimizer not in OPTIMIZERS:
    found.append(f"optimizer must be one of {list(OPTIMIZERS)}, got {config.optimizer!r}")
  for key in ("dtype", "param_dtype"):
    if key in config and config[key] not in DTYPES:
      found.append(f"{key} must be one of {list(DTYPES)}, got {config[key]!r}")
  if "remat" in config and config.remat not in REMAT_POLICIES:
    found.append(f"remat must be one of {list(REMAT_POLICIES)}, got {config.remat!r}")
  if "seed" in config and not _is_int(config.seed):
    found.append(f"seed must be an int, got {config.seed!r}")
  if "mesh" in config:
    sizes = {axis: config.mesh.get(axis) for axis in MESH_AXES}
    bad = {a: s for a, s in sizes.items() if not _is_int(s) or (s < 1 and s != -1)}
    if bad:
      found.append(f"mesh sizes must be positive ints or -1 (the rest), got {bad}")
    elif list(sizes.values()).count(-1) > 1:
      found.append(f"at most one mesh axis may be -1 (the rest of the devices), got {sizes}")
  batch, accum = config.get("batch_size"), config.get("grad_accum_steps")
  if _is_int(batch) and _is_int(accum) and batch > 0 and accum > 0 and batch % accum:
    found.append(f"batch_size {batch} is not divisible by grad_accum_steps {accum}")
  return found


def init_from_problems(init_from: str) -> list[str]:
  """A checkpoint path that does not exist (local or in a bucket). Names that may be Hugging
  Face Hub ids ("albert/albert-base-v2": no scheme, at most one "/", not starting with "/", "."
  or "~") and preset names are left to the loader, which tries the Hub."""
  looks_like_path = (
    init_from.startswith(("/", ".", "~")) or "://" in init_from or init_from.count("/") > 1
  )
  if not init_from or not looks_like_path:
    return []
  where = paths.path(init_from)
  tf_checkpoint = paths.path(init_from + ".index")  # an original TF checkpoint's prefix
  if where.exists() or tf_checkpoint.exists():
    return []
  return [
    f"init_from {init_from!r}: no such file or directory (give a pretraining or fine-tuning "
    "workdir, a saved model folder, an original TF checkpoint or a Hub id)"
  ]


def model_problems(config: Any, model_config: AlbertConfig) -> list[str]:
  """The settings that do not fit the model (its position table)."""
  length = config.get("max_seq_length")
  if _is_int(length) and length > model_config.max_position_embeddings:
    return [
      f"max_seq_length {length} exceeds the model's max_position_embeddings "
      f"{model_config.max_position_embeddings}"
    ]
  return []


def check(found: list[str], program: str) -> None:
  """Raise ConfigError naming every problem (none: return)."""
  if found:
    raise ConfigError(f"Invalid {program} config: " + "; ".join(found))
