"""The pretraining steps, built by one function for the training run and for compile-only mode.

`build_steps(config, model, mesh)` makes the optimizer, the train state's shapes and shardings,
and the jitted train and eval steps (of `pretrain.spec`'s model, batch and losses);
`train.train_and_evaluate` runs them, and `compile_program` (for `python -m pretrain
--compile_only --topology=...`) hands the very same steps, with abstract arguments, to the TPU
compiler (`albert_flax.train.aot`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from albert_flax import sharding
from albert_flax.flops import model_flops_per_step
from albert_flax.train import aot, batch_spec, compiled_steps, optim, training
from pretrain import spec
from pretrain.sentence_loss import freeze_sentence_head
from pretrain.spec import model_for_shapes


@dataclasses.dataclass
class PretrainingSteps(training.ProgramSteps):
  """training.ProgramSteps and the evaluation step."""

  eval_step: training.MeshFunction  # (params, batch) -> stats


def build_steps(config: ml_collections.ConfigDict, model: Any, mesh: Mesh) -> PretrainingSteps:
  """The optimizer, state layout and jitted steps of `config` for `model` on `mesh`.

  Computes nothing: the state's shapes come from `jax.eval_shape`.
  """
  optimizer, schedule = optim.create_optimizer(
    config.optimizer,
    config.learning_rate,
    config.num_train_steps,
    config.warmup_steps,
    config.weight_decay,
    config.grad_clip_norm,
    bias_correction=config.adam_bias_correction,
  )
  optimizer = freeze_sentence_head(optimizer, config.sentence_loss)
  dummy = jnp.zeros((1, config.max_seq_length), jnp.int32)
  dummy_positions = jnp.zeros((1, config.max_predictions_per_seq), jnp.int32)

  def init_params_fn(rng):
    return model.init(rng, dummy, masked_positions=dummy_positions)["params"]

  abstract, shardings = training.abstract_train_state(
    init_params_fn, optimizer, mesh, jax.random.key(config.seed)
  )
  train_step = training.make_train_step(
    spec.stats_fn(model, config.sentence_loss),
    spec.loss_weights_fn(config.sentence_loss),
    optimizer,
    shardings,
    mesh,
    grad_accum_steps=config.grad_accum_steps,
    seed=config.seed,
    learning_rate_fn=schedule,
  )
  # One eval step for every kind of pair: its head stats are renamed by pretrain.evaluation.
  eval_step = training.make_eval_step(spec.stats_fn(model, "sop"), shardings.params, mesh)
  return PretrainingSteps(
    optimizer, schedule, init_params_fn, abstract, shardings, train_step, eval_step
  )


# ================================================================================ compile only

# Config keys the steps never read (the data pipeline, the tokenizer's files, the loop's
# cadence): a saved compiled step still serves a run that changes them. The tokenizer's
# vocabulary size does shape the step; if the trained tokenizer's differs, the argument check
# of `use_saved_steps` names the word table.
KEYS_NOT_IN_STEPS = (
  "data",
  "tokenizer.spm_model",
  "tokenizer.vocab_file",
  "tokenizer.kind",
  "tokenizer.do_lower_case",
  "tokenizer.max_training_sentences",
  "init_from_step",
  "log_every_steps",
  "checkpoint_every_steps",
  "checkpoint_max_to_keep",
  "eval_every_steps",
  "eval_steps",
  "progress_bar",
)


def compile_program(
  config: ml_collections.ConfigDict, devices: Sequence[jax.Device]
) -> aot.Program:
  """The train and eval steps of `config` over `devices`, with abstract arguments."""
  spec.validate_config(config)  # the run's own checks
  model = model_for_shapes(config)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices)
  spec.check_mesh(config, mesh)
  steps = build_steps(config, model, mesh)
  arguments = abstract_arguments(config, steps, mesh)
  flops = model_flops_per_step(
    model.config, config.batch_size, config.max_seq_length, config.max_predictions_per_seq
  )
  return aot.Program(
    mesh,
    [
      aot.CompileJob("train_step", steps.train_step, arguments["train_step"]),
      aot.CompileJob("eval_step", steps.eval_step, arguments["eval_step"]),
    ],
    config.batch_size,
    flops,
    KEYS_NOT_IN_STEPS,
  )


def abstract_arguments(
  config: ml_collections.ConfigDict, steps: PretrainingSteps, mesh: Mesh
) -> dict[str, tuple]:
  """{step name: its arguments as ShapeDtypeStructs with shardings}: (state, batch) and
  (params, batch), the batch [batch_size, ...] split over the mesh's batch axes."""
  state = training.abstract_with_shardings(steps.abstract_state, steps.state_shardings)
  batch = batch_spec.abstract_batch(spec.config_batch_spec(config), mesh)
  return {"train_step": (state, batch), "eval_step": (state.params, batch)}


def use_saved_steps(
  steps: PretrainingSteps, config: ml_collections.ConfigDict, mesh: Mesh, path: str
) -> PretrainingSteps:
  """`steps` with the train and eval steps saved in `path` (`--compile_only --save_compiled`)
  instead of jitted ones, so the run compiles neither. Raises
  compiled_steps.CompiledMismatchError naming what differs when they were compiled for another
  jax / libtpu, slice, mesh, config or argument shape."""
  running = compiled_steps.metadata(config, mesh, KEYS_NOT_IN_STEPS)
  loaded = compiled_steps.load(path, running, abstract_arguments(config, steps, mesh))
  return dataclasses.replace(
    steps,
    train_step=training.MeshFunction(loaded["train_step"], mesh, steps.train_step.rules),
    eval_step=training.MeshFunction(loaded["eval_step"], mesh, steps.eval_step.rules),
  )
