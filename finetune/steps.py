"""The fine-tuning steps, built by one function for the training run and for compile-only mode.

`build_steps(config, model, task, mesh, example)` makes the optimizer, the train state's shapes
and shardings, the jitted train step and the jitted prediction step (`make_predict_fn`) of
`finetune.spec`'s model, batch and losses; `train.run_one` runs them (runs of several seeds share
them through `SharedSteps`), and `compile_program` (`python -m finetune --compile_only
--topology=...`) hands the very same steps, with abstract arguments, to the TPU compiler
(`albert_flax.train.aot`).
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

from albert_flax import sharding
from albert_flax.flops import model_flops_per_step
from albert_flax.train import aot, optim, training
from albert_flax.train.batch_spec import abstract_batch
from finetune import buckets as buckets_lib
from finetune import spec
from finetune.data import MODEL_INPUTS
from finetune.tasks import Task, get_task


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
) -> FinetuningSteps:
  """The optimizer, state layout and jitted steps of `config` for `model` and `task` on `mesh`.

  example: model inputs of one row ([1, ...] arrays), for the parameters' shapes. Computes
  nothing: the state's shapes come from `jax.eval_shape`. The train step takes the run's dropout
  seed as its own argument, `(state, batch, training.step_seed(config.seed))`, so runs of
  several seeds share it.
  """
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
    spec.make_stats_fn(model, task),
    task.loss_weights,
    optimizer,
    shardings,
    mesh,
    grad_accum_steps=config.grad_accum_steps,
    seed=None,  # the step's argument
    learning_rate_fn=schedule,
  )
  predict_step = make_predict_fn(model, task, shardings.params, mesh)
  return FinetuningSteps(
    optimizer, schedule, init_params_fn, abstract, shardings, train_step, predict_step
  )


def make_predict_fn(model, task: Task, params_shardings, mesh) -> training.MeshFunction:
  """Jitted (params, inputs [batch, ...]) -> task.head_outputs, inputs split over the batch
  axes of the mesh (the outputs' layout is left to the compiler; `predict_set` gathers them)."""

  def predict(params, batch):
    return task.head_outputs(spec.apply_model(model, params, batch))

  jitted = jax.jit(predict, in_shardings=(params_shardings, sharding.batch_sharding(mesh)))
  return training.MeshFunction(jitted, mesh, sharding.LOGICAL_RULES)


@dataclasses.dataclass
class SharedSteps:
  """The jitted steps that runs of one config differing only in seed share (finetune.seeds):
  the first run builds them (the train step takes each run's dropout seed as its argument), the
  others reuse them, so N seeds compile once per padded length."""

  steps: FinetuningSteps | None = None
  compiles: buckets_lib.CompileCounter = dataclasses.field(
    default_factory=buckets_lib.CompileCounter
  )
  best_metric: str | None = None  # the task's, for the summary


# ================================================================================ compile only


def compile_program(
  config: ml_collections.ConfigDict, devices: Sequence[jax.Device]
) -> aot.Program:
  """The train and prediction steps of `config` over `devices`, with abstract arguments. The
  task is built without a tokenizer and reads no data."""
  config = spec.resolve_config(config, model_config=spec.checkpoint_config(config.init_from))
  task = get_task(config, None)
  model = spec.model_for_shapes(config, task)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices)
  spec.check_mesh(config, mesh)
  train_spec = spec.batch_spec(config, task, config.batch_size)
  example = {k: np.zeros((1,) + train_spec[k].shape[1:], np.int32) for k in MODEL_INPUTS}
  steps = build_steps(config, model, task, mesh, example)
  state = training.abstract_with_shardings(steps.abstract_state, steps.state_shardings)
  train_batch = abstract_batch(train_spec, mesh)
  eval_spec = spec.batch_spec(config, task, config.eval_batch_size)
  eval_inputs = abstract_batch({k: eval_spec[k] for k in MODEL_INPUTS}, mesh)
  # Every sequence the encoder runs ([batch] or [batch x choices]); the heads' FLOPs are small.
  sequences = int(np.prod(train_spec["input_ids"].shape[:-1]))
  flops = model_flops_per_step(model.config, sequences, config.max_seq_length)
  return aot.Program(
    mesh,
    [
      aot.CompileJob(
        "train_step", steps.train_step, (state, train_batch, training.abstract_step_seed(mesh))
      ),
      aot.CompileJob("predict_step", steps.predict_step, (state.params, eval_inputs)),
    ],
    config.batch_size,
    flops,
  )
