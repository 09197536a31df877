"""The fine-tuning program's spec: what its run, multi-seed runs and compile-only mode share.

From the config: the settings, checked and with the per-task defaults filled in
(`resolve_config`); the model's config with the run's overrides applied (`model_overrides`, once
for the checkpoint load and for compile-only's `model_for_shapes`); the batch, as the task states
it (`batch_spec`: names, shapes, dtypes, logical axes) and the checks of the data against the
model (`check_features`, `check_model`); the losses (`make_stats_fn`); and the check that the
batches fit the mesh (`check_mesh`). `finetune.train` runs them, `finetune.steps` compiles them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

import albert_flax as af
from albert_flax.train import profiling, settings, training
from albert_flax.train.batch_spec import BatchField, check_batch, check_fits_mesh
from albert_flax.train.mistakes import ConfigError
from finetune import buckets as buckets_lib
from finetune.configs.common import PER_TASK_FIELDS, SMALL_HIDDEN_SIZE, SMALL_MODEL_DEFAULTS
from finetune.data import MODEL_INPUTS, Features, num_rows
from finetune.tasks import Task

log = logging.getLogger(__name__)

# ============================================================================ configuration


def resolve_config(
  config: ml_collections.ConfigDict,
  hidden_size: int | None = None,
  model_config: af.AlbertConfig | None = None,
) -> ml_collections.ConfigDict:
  """A copy with the per-task defaults filled in (fields still None) and the settings checked.

  hidden_size: the checkpoint's (default: model_config's); below SMALL_HIDDEN_SIZE the
  small-model defaults replace the published learning rate and length.
  `config.hyperparameter_defaults` says which were used. model_config: the checkpoint's, when
  known, to check max_seq_length against its position table.
  Raises ConfigError (a ValueError) naming the settings that cannot work, before any work starts.
  """
  if hidden_size is None and model_config is not None:
    hidden_size = model_config.hidden_size
  config = ml_collections.ConfigDict(config.to_dict())
  key = str(config.get(config.get("per_task_key") or "", "")).replace(".", "_")
  row = config.per_task.get(key) if config.get("per_task") else None
  config.hyperparameter_defaults = "published per-task"
  if row is not None and hidden_size is not None and hidden_size < SMALL_HIDDEN_SIZE:
    row = ml_collections.ConfigDict({**row.to_dict(), **SMALL_MODEL_DEFAULTS})
    config.hyperparameter_defaults = (
      f"small-model (hidden size {hidden_size} < {SMALL_HIDDEN_SIZE}: "
      + ", ".join(f"{k} {v}" for k, v in SMALL_MODEL_DEFAULTS.items())
      + ", the rest published per-task)"
    )
  if config.get("warmup_steps") is None and config.get("train_steps") is not None and row:
    # Steps given, warm-up not: keep the published warm-up fraction of training.
    config.warmup_steps = int(round(config.train_steps * row.warmup_steps / row.train_steps))
  for field in PER_TASK_FIELDS:
    if config.get(field) is None:
      if row is None and config.get("per_task"):  # a typo, not a missing learning rate
        raise ConfigError(
          f"unknown {config.get('per_task_key')} {config.get(config.per_task_key)!r}: choose "
          f"one of {sorted(config.per_task)} (or set config.{field} and the other "
          f"{list(PER_TASK_FIELDS)} yourself)"
        )
      if row is None or row.get(field) is None:
        raise ConfigError(
          f"config.{field} is not set and config.per_task has no default for "
          f"{config.get('per_task_key')}={key!r}"
        )
      config[field] = row[field]
  if not config.get("init_from"):
    raise ConfigError(
      "--config.init_from is required: a checkpoint to fine-tune (any path "
      "af.from_pretrained reads, or a Hugging Face Hub id)"
    )
  # The checks pretraining shares (a negative learning rate, ...), then fine-tuning's own.
  problems = settings.problems(
    config,
    "train_steps",
    zero_means_default=("eval_every_steps", "log_every_steps"),
    warmup_within_steps=True,
  )
  problems += settings.init_from_problems(str(config.init_from))
  if not isinstance(config.eval_batch_size, int) or config.eval_batch_size < 1:
    problems.append(f"eval_batch_size must be a positive int, got {config.eval_batch_size!r}")
  if model_config is not None:
    problems += settings.model_problems(config, model_config)
  problems += profiling.config_problems(config)
  settings.check(problems, "fine-tuning")
  if config.eval_every_steps <= 0:
    config.eval_every_steps = max(1, config.train_steps // 10)
  if config.log_every_steps <= 0:
    config.log_every_steps = max(1, min(50, config.train_steps // 20))
  try:
    buckets_lib.resolve_buckets(config.get("length_buckets"), config.max_seq_length)  # checks
  except ValueError as e:
    raise ConfigError(str(e)) from None
  return config


def checkpoint_config(init_from: str) -> af.AlbertConfig | None:
  """The checkpoint's model config, read without its weights (None when it cannot be read: the
  load that follows reports the problem)."""
  if not init_from:
    return None
  if init_from in af.AlbertConfig.preset_names():  # compile-only's shapes of a released size
    return af.AlbertConfig.preset(init_from)
  try:
    return af.AlbertConfig.from_pretrained(init_from)
  except (OSError, ValueError, KeyError, TypeError) as e:  # the checkpoint load names it better
    log.warning("could not read the model config of %s (%s): published defaults", init_from, e)
    return None


def model_overrides(config: ml_collections.ConfigDict, task: Task) -> dict[str, Any]:
  """The AlbertConfig fields the run sets on the checkpoint's: dtypes, dropout, remat, and the
  task's head settings (num_labels, problem_type, label_names)."""
  dropout = float(config.hidden_dropout_prob)
  return dict(
    dtype=config.dtype,
    param_dtype=config.param_dtype,
    hidden_dropout_prob=dropout,
    attention_probs_dropout_prob=dropout,
    classifier_dropout_prob=float(config.classifier_dropout_prob),
    remat=config.remat,
    **task.model_overrides(),
  )


def model_for_shapes(config: ml_collections.ConfigDict, task: Any) -> Any:
  """The model the run would build, from config files only (no weights): `init_from` names a
  preset ("base-v2") or a checkpoint whose config.json is read."""
  overrides = model_overrides(config, task)
  if config.init_from in af.AlbertConfig.preset_names():
    model_config = af.AlbertConfig.preset(config.init_from, **overrides)
  else:
    model_config = af.AlbertConfig.from_pretrained(config.init_from).replace(**overrides)
  return task.model_class(model_config)


def check_model(config: ml_collections.ConfigDict, model_config: af.AlbertConfig, vocab_size: int):
  """The tokenizer's ids and config.max_seq_length fit the model's tables."""
  if vocab_size > model_config.vocab_size:
    raise ValueError(
      f"the tokenizer has {vocab_size} pieces but the model only "
      f"{model_config.vocab_size} embeddings: wrong spiece.model?"
    )
  if config.max_seq_length > model_config.max_position_embeddings:
    raise ValueError(
      f"max_seq_length {config.max_seq_length} exceeds the model's "
      f"max_position_embeddings {model_config.max_position_embeddings}"
    )


# ============================================================================ batch and data


def batch_spec(
  config: ml_collections.ConfigDict, task: Task, batch_size: int
) -> dict[str, BatchField]:
  """The train step's batch of `batch_size` rows, as the task states it."""
  return task.batch_spec(batch_size, config.max_seq_length)


def train_columns(config: ml_collections.ConfigDict, task: Task, features: Features) -> Features:
  """The training features the train step takes: the fields of the task's batch spec ("weights"
  aside: each batch adds them), checked against it."""
  wanted = {k: f for k, f in batch_spec(config, task, num_rows(features)).items() if k != "weights"}
  try:
    check_batch(wanted, features)
  except ValueError as e:
    raise ValueError(f"training features do not match the task's batch: {e}") from None
  return {k: features[k] for k in wanted}


def check_features(features: Features, model_config, where: str) -> None:
  """Token ids inside the vocabulary and lengths inside the position table: XLA would clamp
  an out-of-range gather silently."""
  ids = features["input_ids"]
  flat = {k: features[k].reshape(-1, ids.shape[-1]) for k in MODEL_INPUTS}
  try:
    af.validate_inputs(
      model_config, flat["input_ids"], flat["attention_mask"], flat["token_type_ids"]
    )
  except ValueError as e:
    raise ValueError(f"{where} features do not fit the model: {e}") from None


# ============================================================================ losses


def make_stats_fn(model, task: Task) -> training.StatsFn:
  """stats_fn(params, batch, rng, train) for `training.make_train_step`: the model in training
  (dropout on) or inference mode, then the task's loss terms as (sum, weight) pairs."""

  def stats_fn(params, batch, rng, train):
    outputs = apply_model(model, params, batch, rngs={"dropout": rng} if train else None)
    return task.stats(outputs, batch)

  return stats_fn


def apply_model(model, params, batch: Mapping[str, jax.Array], rngs: dict | None = None) -> Any:
  """The model on a batch's inputs: in training mode (dropout) when given `rngs`."""
  return model.apply(
    {"params": params},
    batch["input_ids"],
    attention_mask=batch["attention_mask"],
    token_type_ids=batch["token_type_ids"],
    deterministic=rngs is None,
    rngs=rngs or {},
  )


# ============================================================================ mesh


def check_mesh(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
  """The training batch splits into grad_accum_steps micro-batches, each evenly over the mesh's
  batch axes, and so does the evaluation batch."""
  check_fits_mesh(mesh, config.batch_size, config.grad_accum_steps)
  check_fits_mesh(mesh, config.eval_batch_size, key="eval_batch_size")
