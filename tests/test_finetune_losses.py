"""Task-head losses against transformers' PyTorch losses, from the same initial weights and batch.

Each transformers AlbertFor* model is saved with save_pretrained and loaded with
af.from_pretrained; the loss the fine-tuning step optimizes (the task's stats and loss weights,
computed in training mode with dropout 0) must equal the loss transformers returns within 1e-5.
For question answering, the real jitted train step's first reported loss is checked too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import BATCH, SEQ, make_inputs, torch_reference

import albert_flax as af
from albert_flax import sharding
from albert_flax.train import losses, optim, training
from finetune.configs import glue as glue_config
from finetune.configs import ner as ner_config
from finetune.configs import race as race_config
from finetune.configs import squad as squad_config
from finetune.tasks.glue import GlueTask
from finetune.tasks.ner import NerTask
from finetune.tasks.race import RaceTask
from finetune.tasks.squad import SquadTask
from finetune.train import make_stats_fn, resolve_config

# One shared layer: the heads' losses are under test here, the backbone's parity is elsewhere.
SMALL = dict(num_hidden_layers=1, num_hidden_groups=1, inner_group_num=1)


def _load(tmp_path, torch_model, model_class):
  torch_model.save_pretrained(tmp_path)
  return af.from_pretrained(str(tmp_path), model_class, classifier_dropout_prob=0.0)


def _torch_loss(torch_model, ids, mask, types, **targets):
  import torch

  with torch.no_grad():
    out = torch_model(
      torch.tensor(ids),
      attention_mask=torch.tensor(mask),
      token_type_ids=torch.tensor(types),
      **{k: torch.tensor(v) for k, v in targets.items()},
    )
  return float(out.loss)


def _objective(model, params, task, batch):
  """What the train step minimizes: sum over loss terms of sum / total weight."""
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  batch["weights"] = jnp.ones((batch["input_ids"].shape[0],), jnp.float32)
  stats_fn = make_stats_fn(model, task)

  @jax.jit  # one compilation instead of one per operation
  def objective(params, batch):
    stats = stats_fn(params, batch, jax.random.key(0), True)
    totals = task.loss_weights(batch)
    return sum(stats[k][0] / totals[k] for k in totals)

  return float(objective(params, batch))


def _assert_same_loss(torch_model, model, params, task, inputs, **targets):
  """Our objective on (inputs, targets) equals transformers' loss within 1e-5."""
  ids, mask, types = inputs
  batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, **targets}
  expected = _torch_loss(torch_model, ids, mask, types, **targets)
  assert _objective(model, params, task, batch) == pytest.approx(expected, abs=1e-5)


def _task(cls, config_module, **fields):
  config = config_module.get_config()
  config.update(dict(init_from="unused", **fields))
  return cls(resolve_config(config), tokenizer=None)


def test_sequence_classification_loss(tmp_path):
  torch_model = torch_reference("AlbertForSequenceClassification", num_labels=3, **SMALL)
  model, params = _load(tmp_path, torch_model, af.AlbertForSequenceClassification)
  ids, mask, types = make_inputs()
  labels = np.array([2, 0, 1])
  task = _task(GlueTask, glue_config, task="mnli")
  _assert_same_loss(torch_model, model, params, task, (ids, mask, types), labels=labels)


def test_regression_loss(tmp_path):
  torch_model = torch_reference("AlbertForSequenceClassification", num_labels=1, **SMALL)
  model, params = _load(tmp_path, torch_model, af.AlbertForSequenceClassification)
  ids, mask, types = make_inputs(seed=1)
  scores = np.array([0.5, 3.25, 4.0], np.float32)
  task = _task(GlueTask, glue_config, task="stsb")
  _assert_same_loss(torch_model, model, params, task, (ids, mask, types), labels=scores)


def test_multi_label_loss(tmp_path):
  torch_model = torch_reference(
    "AlbertForSequenceClassification",
    num_labels=4,
    problem_type="multi_label_classification",
    **SMALL,
  )
  model, params = _load(tmp_path, torch_model, af.AlbertForSequenceClassification)
  assert model.config.problem_type == "multi_label_classification"
  ids, mask, types = make_inputs(seed=2)
  labels = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]], np.float32)

  @jax.jit
  def loss(params):
    logits = model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types).logits
    stat = losses.sequence_classification_loss(logits, labels, model.config.problem_type)
    return losses.mean_loss(stat)

  assert float(loss(params)) == pytest.approx(
    _torch_loss(torch_model, ids, mask, types, labels=labels), abs=1e-5
  )


def test_multiple_choice_loss(tmp_path):
  torch_model = torch_reference("AlbertForMultipleChoice", **SMALL)
  model, params = _load(tmp_path, torch_model, af.AlbertForMultipleChoice)
  ids, mask, types = make_inputs(choices=4, seed=3)
  labels = np.array([3, 0, 2])
  task = _task(RaceTask, race_config)
  _assert_same_loss(torch_model, model, params, task, (ids, mask, types), labels=labels)


def test_token_classification_loss(tmp_path):
  torch_model = torch_reference("AlbertForTokenClassification", num_labels=9, **SMALL)
  model, params = _load(tmp_path, torch_model, af.AlbertForTokenClassification)
  ids, mask, types = make_inputs(seed=4)
  labels = np.random.default_rng(0).integers(0, 9, (BATCH, SEQ))
  labels[mask == 0] = -100  # padding
  labels[:, 0] = -100  # [CLS]
  labels[0, 2:4] = -100  # continuation pieces
  task = _task(NerTask, ner_config)
  _assert_same_loss(torch_model, model, params, task, (ids, mask, types), labels=labels)


def test_span_loss_and_first_train_step(tmp_path):
  torch_model = torch_reference("AlbertForQuestionAnswering", **SMALL)
  model, params = _load(tmp_path, torch_model, af.AlbertForQuestionAnswering)
  ids, mask, types = make_inputs(seed=5)
  # the last end position lies outside the sequence: transformers clamps it and ignores it
  starts, ends = np.array([1, 0, 3]), np.array([4, 0, 40])
  expected = _torch_loss(torch_model, ids, mask, types, start_positions=starts, end_positions=ends)
  task = _task(SquadTask, squad_config)
  batch = {
    "input_ids": ids,
    "attention_mask": mask,
    "token_type_ids": types,
    "start_positions": starts,
    "end_positions": ends,
  }
  assert _objective(model, params, task, batch) == pytest.approx(expected, abs=1e-5)

  # the jitted train step reports the same loss for its first update
  mesh = sharding.make_mesh(-1, 1, 1, devices=jax.devices()[:1])
  optimizer, schedule = optim.create_optimizer("adamw", 1e-3, 10, 2)
  state, shardings = training.init_train_state(
    lambda r: model.init(r, jnp.asarray(ids))["params"],
    optimizer,
    mesh,
    jax.random.key(0),
    params=params,
  )
  step = training.make_train_step(
    make_stats_fn(model, task),
    task.loss_weights,
    optimizer,
    shardings,
    mesh,
    learning_rate_fn=schedule,
  )
  device_batch = sharding.global_batch(
    {
      **{k: np.asarray(v, np.int32) for k, v in batch.items()},
      "weights": np.ones((BATCH,), np.float32),
    },
    mesh,
    BATCH,
  )
  _, metrics = step(state, device_batch)
  assert float(metrics["loss"]) == pytest.approx(expected, abs=1e-5)
