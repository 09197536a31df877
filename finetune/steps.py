"""The fine-tuning steps, built by one function for the training run and for compile-only mode.

`build_steps(config, model, task, mesh, example)` makes the optimizer, the train state's shapes
and shardings, the jitted train step and the jitted prediction step; `train.train_and_evaluate`
runs them, and `compile_program` (`python -m finetune --compile_only --topology=...`) hands the
very same steps, with abstract arguments, to the TPU compiler (`albert_flax.train.aot`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

import albert_flax as af
from albert_flax import sharding
from albert_flax.flops import model_flops_per_step
from albert_flax.train import aot, optim, training
from finetune.data import MODEL_INPUTS


@dataclasses.dataclass
class FinetuningSteps(training.ProgramSteps):
  """training.ProgramSteps and the prediction step."""

  predict_step: training.MeshFunction  # (params, inputs) -> task.head_outputs


def build_steps(
  config: ml_collections.ConfigDict,
  model: Any,
  task: Any,
  mesh: Mesh,
  example: Mapping[str, Any],
  train_seed: int | None = None,
) -> FinetuningSteps:
  """The optimizer, state layout and jitted steps of `config` for `model` and `task` on `mesh`.

  example: model inputs of one row ([1, ...] arrays), for the parameters' shapes. Computes
  nothing: the state's shapes come from `jax.eval_shape`. train_seed: the train step's dropout
  seed (default config.seed; multi-seed runs pass 0 and send each run's seed with its batches).
  """
  from finetune.train import make_predict_fn, make_stats_fn  # the task glue lives there

  optimizer, schedule = optim.create_optimizer(
    config.optimizer,
    config.learning_rate,
    config.train_steps,
    config.warmup_steps,
    weight_decay=config.weight_decay,
    grad_clip_norm=config.grad_clip_norm,
    b1=config.adam_b1,
    b2=config.adam_b2,
    eps=config.adam_eps,
    bias_correction=config.adam_bias_correction,
  )
  dummy = {k: jnp.asarray(example[k]) for k in MODEL_INPUTS}

  def init_params_fn(rng):
    return model.init(
      rng,
      dummy["input_ids"],
      attention_mask=dummy["attention_mask"],
      token_type_ids=dummy["token_type_ids"],
    )["params"]

  abstract, shardings = training.abstract_train_state(
    init_params_fn, optimizer, mesh, jax.random.key(config.seed)
  )
  train_step = training.make_train_step(
    make_stats_fn(model, task),
    task.loss_weights,
    optimizer,
    shardings,
    mesh,
    grad_accum_steps=config.grad_accum_steps,
    seed=config.seed if train_seed is None else train_seed,
    learning_rate_fn=schedule,
  )
  predict_step = make_predict_fn(model, task, shardings.params, mesh)
  return FinetuningSteps(
    optimizer, schedule, init_params_fn, abstract, shardings, train_step, predict_step
  )


# ================================================================================ compile only


def batch_shapes(
  config: ml_collections.ConfigDict, model: Any, batch_size: int
) -> dict[str, tuple[tuple[int, ...], Any]]:
  """name -> (global shape, dtype) of a training batch of the task's head, as the tasks make
  them (model inputs, targets, and the per-row "weights")."""
  b, s = batch_size, config.max_seq_length
  if isinstance(model, af.AlbertForMultipleChoice):
    from finetune.tasks.race import NUM_CHOICES

    inputs = (b, NUM_CHOICES, s)
  else:
    inputs = (b, s)
  shapes = {name: (inputs, np.int32) for name in MODEL_INPUTS}
  if isinstance(model, af.AlbertForQuestionAnswering):
    shapes.update(start_positions=((b,), np.int32), end_positions=((b,), np.int32))
  elif isinstance(model, af.AlbertForTokenClassification):
    shapes["labels"] = ((b, s), np.int32)
  elif model.config.problem_type == "regression":
    shapes["labels"] = ((b,), np.float32)
  else:
    shapes["labels"] = ((b,), np.int32)
  shapes["weights"] = ((b,), np.float32)
  return shapes


def model_for_shapes(config: ml_collections.ConfigDict, task: Any) -> Any:
  """The model the run would build, from config files only (no weights): `init_from` names a
  preset ("base-v2") or a checkpoint whose config.json is read."""
  dropout = float(config.hidden_dropout_prob)
  overrides = dict(
    dtype=config.dtype,
    param_dtype=config.param_dtype,
    hidden_dropout_prob=dropout,
    attention_probs_dropout_prob=dropout,
    classifier_dropout_prob=float(config.classifier_dropout_prob),
    remat=config.remat,
    **task.model_overrides(),
  )
  if config.init_from in af.AlbertConfig.preset_names():
    model_config = af.AlbertConfig.preset(config.init_from, **overrides)
  else:
    model_config = af.AlbertConfig.from_pretrained(config.init_from).replace(**overrides)
  return task.model_class(model_config)


def compile_program(
  config: ml_collections.ConfigDict, devices: Sequence[jax.Device]
) -> aot.Program:
  """The train and prediction steps of `config` over `devices`, with abstract arguments. The
  task is built without a tokenizer and reads no data."""
  from finetune.tasks import get_task
  from finetune.train import checkpoint_config, resolve_config

  config = resolve_config(config, model_config=checkpoint_config(config.init_from))
  task = get_task(config, None)
  model = model_for_shapes(config, task)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices)
  split = sharding.batch_split(mesh)
  for key, multiple in (
    ("batch_size", split * config.grad_accum_steps),
    ("eval_batch_size", split),
  ):
    if config[key] % multiple:
      raise ValueError(
        f"{key} {config[key]} must be a multiple of {multiple} (mesh {dict(mesh.shape)}"
        + (f", grad_accum_steps {config.grad_accum_steps})" if key == "batch_size" else ")")
      )
  shapes = batch_shapes(config, model, config.batch_size)
  example = {k: np.zeros((1,) + shapes[k][0][1:], np.int32) for k in MODEL_INPUTS}
  steps = build_steps(config, model, task, mesh, example)
  state = training.abstract_with_shardings(steps.abstract_state, steps.state_shardings)

  def abstract_batch(batch_size, names):
    return {
      name: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding.batch_sharding(mesh, len(shape)))
      for name, (shape, dtype) in batch_shapes(config, model, batch_size).items()
      if name in names
    }

  train_batch = abstract_batch(config.batch_size, shapes)
  eval_inputs = abstract_batch(config.eval_batch_size, MODEL_INPUTS)
  # Every sequence the encoder runs ([batch] or [batch x choices]); the heads' FLOPs are small.
  sequences = int(np.prod(shapes["input_ids"][0][:-1]))
  flops = model_flops_per_step(model.config, sequences, config.max_seq_length)
  return aot.Program(
    mesh,
    [
      aot.CompileJob("train_step", steps.train_step, (state, train_batch)),
      aot.CompileJob("predict_step", steps.predict_step, (state.params, eval_inputs)),
    ],
    config.batch_size,
    flops,
  )
