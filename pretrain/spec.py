"""The pretraining program's spec: what its run, compile-only mode and data share.

From the config: the settings check (`validate_config`), the model's config with the run's
overrides applied (`model_overrides`, `model_config`), the batch (`batch_spec`: names, shapes,
dtypes, logical axes; `validate_batch` checks a host batch against it), the losses
(`stats_fn`), and the check that the batch fits the mesh (`check_mesh`). `pretrain.train` runs
them, `pretrain.steps` compiles them, `pretrain.pipeline` makes batches of `BATCH_KEYS`.
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np
from jax.sharding import Mesh

import albert_flax as af
from albert_flax.train import losses, profiling, settings
from albert_flax.train.batch_spec import LENGTH, ROWS, BatchField, check_batch, check_fits_mesh
from albert_flax.train.training import StatsFn
from pretrain.sentence_loss import SENTENCE_LOSSES

# ====================================================================================== config


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError (a ValueError) naming every inconsistent setting."""
  c = config
  problems = settings.problems(c, "num_train_steps")  # the checks fine-tuning shares
  for key in ("max_predictions_per_seq", "checkpoint_every_steps", "checkpoint_max_to_keep"):
    if not isinstance(c[key], int) or c[key] < 1:
      problems.append(f"{key} must be a positive int, got {c[key]!r}")
  if not isinstance(c.eval_steps, int) or c.eval_steps < 0:
    problems.append(f"eval_steps must be an int >= 0, got {c.eval_steps!r}")
  problems += settings.init_from_problems(c.init_from)
  if not c.init_from and c.model not in af.AlbertConfig.preset_names():
    problems.append(f"model must be one of {af.AlbertConfig.preset_names()}, got {c.model!r}")
  if not problems and c.max_predictions_per_seq > c.max_seq_length:
    problems.append("max_predictions_per_seq exceeds max_seq_length")
  if c.data.tfds_name and c.data.train_files not in ("", "builtin"):
    problems.append("give data.train_files or data.tfds_name, not both")
  try:
    tokenizer_kind(c)
  except ValueError as e:
    problems.append(str(e))
  if c.get("sentence_loss", "sop") not in SENTENCE_LOSSES:
    problems.append(f"sentence_loss must be one of {SENTENCE_LOSSES}, got {c.sentence_loss!r}")
  problems += profiling.config_problems(c)
  if not problems and not c.init_from:  # the model, as build_model makes it (any vocab_size)
    try:
      model_config = af.AlbertConfig.preset(c.model, **model_overrides(c))
    except (ValueError, TypeError) as e:
      problems.append(f"model_overrides: {e}")
    else:
      problems += settings.model_problems(c, model_config)
  elif not problems and c.init_from not in af.AlbertConfig.preset_names():
    try:  # the checkpoint's config only; a checkpoint that cannot be read is named by the load
      problems += settings.model_problems(c, af.AlbertConfig.from_pretrained(c.init_from))
    except (OSError, ValueError):
      pass
  # Before any work (tokenizer training, data reading): minutes, on a big corpus.
  settings.check(problems, "pretraining")


def tokenizer_kind(config) -> str:
  """The tokenizer a run uses: tokenizer.kind ("sentencepiece" or "wordpiece"), or WordPiece
  when tokenizer.vocab_file is set."""
  kind = config.tokenizer.get("kind", "") or (
    "wordpiece" if config.tokenizer.get("vocab_file") else "sentencepiece"
  )
  if kind not in ("sentencepiece", "wordpiece"):
    raise ValueError(f"tokenizer.kind must be 'sentencepiece' or 'wordpiece', got {kind!r}")
  if config.tokenizer.spm_model and config.tokenizer.get("vocab_file"):
    raise ValueError("set tokenizer.spm_model (SentencePiece) or tokenizer.vocab_file (WordPiece)")
  if kind == "wordpiece" and config.tokenizer.spm_model:
    raise ValueError("tokenizer.kind='wordpiece' takes tokenizer.vocab_file, not spm_model")
  if kind == "sentencepiece" and config.tokenizer.get("vocab_file"):
    raise ValueError("tokenizer.vocab_file is a WordPiece vocabulary: tokenizer.kind='wordpiece'")
  return kind


# ======================================================================================= model


def model_overrides(config) -> dict[str, Any]:
  """The AlbertConfig fields the run sets: model_overrides given, dtypes, remat."""
  overrides = {k: v for k, v in config.model_overrides.to_dict().items() if v is not None}
  overrides.update(dtype=config.dtype, param_dtype=config.param_dtype, remat=config.remat)
  return overrides


def model_config(config: ml_collections.ConfigDict, vocab_size: int) -> af.AlbertConfig:
  """The model's config, from config files only (no weights): `init_from` may name a preset
  ("base-v2") or a checkpoint (its config.json is read); without it, `config.model` with
  `vocab_size` (the tokenizer's)."""
  overrides = model_overrides(config)
  if config.init_from in af.AlbertConfig.preset_names():
    return af.AlbertConfig.preset(config.init_from, **overrides)
  if config.init_from:
    return af.AlbertConfig.from_pretrained(config.init_from).replace(**overrides)
  return af.AlbertConfig.preset(config.model, vocab_size=vocab_size, **overrides)


def model_for_shapes(config: ml_collections.ConfigDict) -> af.AlbertForPreTraining:
  """The model the run would build, from config files only (no weights, no tokenizer): with
  the tokenizer's configured vocabulary size."""
  return af.AlbertForPreTraining(model_config(config, config.tokenizer.vocab_size))


# ================================================================================ batch, losses


def batch_spec(rows: int, seq_len: int, predictions: int) -> dict[str, BatchField]:
  """name -> field of a batch of `rows` examples, as `pretrain.data` makes them."""
  b, s, p = rows, seq_len, predictions
  return {
    "input_ids": BatchField((b, s), np.int32, (ROWS, LENGTH)),
    "attention_mask": BatchField((b, s), np.int32, (ROWS, LENGTH)),
    "token_type_ids": BatchField((b, s), np.int32, (ROWS, LENGTH)),
    "masked_lm_positions": BatchField((b, p), np.int32, (ROWS, None)),
    "masked_lm_ids": BatchField((b, p), np.int32, (ROWS, None)),
    "masked_lm_weights": BatchField((b, p), np.float32, (ROWS, None)),
    "sentence_order_label": BatchField((b,), np.int32, (ROWS,)),
  }


BATCH_KEYS = tuple(batch_spec(1, 1, 1))


def config_batch_spec(config: ml_collections.ConfigDict) -> dict[str, BatchField]:
  """The global training (and evaluation) batch of `config`."""
  return batch_spec(config.batch_size, config.max_seq_length, config.max_predictions_per_seq)


def validate_batch(
  model_config: af.AlbertConfig,
  batch: dict[str, np.ndarray],
  rows: int,
  seq_len: int,
  predictions: int,
) -> None:
  """Shapes and value ranges of a host batch of `rows` examples (XLA would clamp bad gather
  indices silently)."""
  check_batch(batch_spec(rows, seq_len, predictions), batch)
  af.validate_inputs(
    model_config, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
  )
  for name, upper in (
    ("masked_lm_positions", seq_len),
    ("masked_lm_ids", model_config.vocab_size),
    ("sentence_order_label", 2),
  ):
    values = batch[name]
    if values.size and (values.min() < 0 or values.max() >= upper):
      raise ValueError(f"batch field {name!r} holds values outside [0, {upper})")


def stats_fn(model: Any, sentence_loss: str = "sop") -> StatsFn:
  """(params, batch, rng, train) -> the MLM and sentence losses as (sum, weight) stats: the
  sentence head's as `sentence_loss` names them (`pretrain.sentence_loss`; "none": no head)."""
  return losses.pretraining_stats_fn(model, sentence_loss)


def loss_weights_fn(sentence_loss: str = "sop") -> Any:
  """batch -> the weight of each term of the objective `sentence_loss` trains."""
  return losses.pretraining_loss_weights_fn(sentence_loss)


# ======================================================================================== mesh


def check_mesh(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
  """The global batch splits into grad_accum_steps micro-batches, each evenly over the mesh."""
  check_fits_mesh(mesh, config.batch_size, config.grad_accum_steps)
