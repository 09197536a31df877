"""The fine-tuning loop: `train_and_evaluate(config, workdir)` for every task.

    checkpoint + tokenizer -> task features -> sharded TrainState -> jitted steps (AdamW,
    warm-up + linear decay) -> evaluation every N steps (best checkpoint kept) -> final
    evaluation with the best parameters -> eval_results.json, predictions, the model.

The machinery is the library's (`albert_flax.sharding`, `optim`, `training`); a task
(`finetune.tasks`) brings its data, loss and metrics. Outputs in `workdir`:

    metrics.jsonl          one JSON object per log / evaluation line
    tensorboard/           the same scalars for TensorBoard
    checkpoints/latest/    the full train state at the last evaluation (a rerun resumes there)
    checkpoints/best/      the parameters with the best `task.best_metric`
    eval_results.json      final metrics of every evaluation set ("<set>/<metric>")
    predictions/           per-task prediction files (GLUE TSVs, SQuAD predictions.json, ...)
    model/                 the fine-tuned model (orbax, config.json, spiece.model)
    hf/                    the same in transformers' format, with --config.export_hf=True
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

import albert_flax as af
from albert_flax import paths, sharding
from albert_flax import workdir as layout
from albert_flax.train import settings, training
from albert_flax.train.checkpoints import TrainCheckpointManager, same_on_all_processes
from albert_flax.train.loop import TrainLoop
from albert_flax.train.metric_writers import MetricWriter
from albert_flax.train.program import ConfigError
from albert_flax.train.run_control import COMMON_SAFE_KEYS, WorkdirRun
from finetune import buckets as buckets_lib
from finetune.configs.common import PER_TASK_FIELDS, SMALL_HIDDEN_SIZE, SMALL_MODEL_DEFAULTS
from finetune.data import (
  MODEL_INPUTS,
  Features,
  num_rows,
  train_batches,
  write_json,
)
from finetune.steps import build_steps
from finetune.tasks import EvalSet, Task, get_task

log = logging.getLogger(__name__)

# Keys a resumed run may change: see albert_flax.train.run_control.
SAFE_TO_CHANGE = (*COMMON_SAFE_KEYS, "compile_ahead")

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


def load_tokenizer(config: ml_collections.ConfigDict) -> Any:
  """config.spm_model (a spiece.model or a WordPiece vocab.txt), else the tokenizer `init_from`
  goes with (`af.load_tokenizer`: next to the checkpoint, or in its Hub repository)."""
  return af.load_tokenizer(config.get("spm_model") or config.init_from)


# ============================================================================ data checks


def _check_features(features: Features, model_config, where: str) -> None:
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


# ============================================================================ steps


def make_stats_fn(model, task: Task) -> training.StatsFn:
  """stats_fn(params, batch, rng, train) for `training.make_train_step`: the model in training
  (dropout on) or inference mode, then the task's loss terms as (sum, weight) pairs."""

  def stats_fn(params, batch, rng, train):
    if "dropout_seed" in batch:  # runs of several seeds share one compiled step (seeds.py)
      rng = jax.random.fold_in(rng, batch["dropout_seed"][0])
    outputs = model.apply(
      {"params": params},
      batch["input_ids"],
      attention_mask=batch["attention_mask"],
      token_type_ids=batch["token_type_ids"],
      deterministic=not train,
      rngs={"dropout": rng} if train else {},
    )
    return task.stats(outputs, batch)

  return stats_fn


def make_predict_fn(model, task: Task, params_shardings, mesh) -> training.MeshFunction:
  """Jitted (params, inputs [batch, ...]) -> task.head_outputs, inputs split over the batch
  axes of the mesh (the outputs' layout is left to the compiler; `_to_host` gathers them)."""

  def predict(params, batch):
    outputs = model.apply(
      {"params": params},
      batch["input_ids"],
      attention_mask=batch["attention_mask"],
      token_type_ids=batch["token_type_ids"],
      deterministic=True,
    )
    return task.head_outputs(outputs)

  jitted = jax.jit(predict, in_shardings=(params_shardings, sharding.batch_sharding(mesh)))
  return training.MeshFunction(jitted, mesh, sharding.LOGICAL_RULES)


def compile_ahead(
  train_step: training.MeshFunction,
  predict_step: training.MeshFunction,
  state: training.TrainState,
  columns: Features,
  eval_inputs: list[Features],
  buckets: tuple[int, ...] | None,
  make_train_batch: TrainBatchMaker,
  eval_batch_size: int,
  mesh,
  seed: int,
  steps: range,
) -> tuple[int, list[int], list[int]]:
  """Compiles, side by side, the train-step programs of every padded width the batches of
  `steps` will have (from the rows' lengths and `seed`) and the prediction programs of the
  widths of `eval_inputs` (model inputs of each set), before the first step: one compile after
  another at first use costs their sum, on a host's idle cores they overlap (XLA compiles each
  program on one thread or two). make_train_batch: full-width training rows [batch, ...] -> the
  train step's batch, as the loop makes it. Returns (programs compiled, train widths, predict
  widths)."""
  width = columns["input_ids"].shape[-1]
  batch_size = make_train_batch.batch_size
  if buckets is None:
    train_widths = [width]
  else:
    lengths = buckets_lib.row_lengths(columns)
    train_widths = buckets_lib.train_widths(
      lengths, batch_size, buckets, seed, steps.start, steps.stop
    )
  jobs = [
    (train_step, (state, make_train_batch(buckets_lib.trim(make_train_batch.example, w))))
    for w in train_widths
  ]
  predict_widths = set()
  for inputs in eval_inputs:
    for planned in _eval_plan(inputs, eval_batch_size, buckets):
      if planned.width not in predict_widths:
        predict_widths.add(planned.width)
        batch = buckets_lib.trim({k: v[planned.rows] for k, v in inputs.items()}, planned.width)
        jobs.append((predict_step, (state.params, _device_batch(batch, mesh, eval_batch_size))))
  return training.compile_concurrently(jobs), train_widths, sorted(predict_widths)


class TrainBatchMaker:
  """Training rows (every row, on every process) -> the train step's global batch: this
  process's rows, the per-row weights, and the run's seed when runs share the step.
  `example`: the first `batch_size` rows of `columns`, the shapes compile_ahead compiles for."""

  def __init__(self, columns: Features, batch_size: int, mesh, seed: int | None = None):
    self.batch_size, self.mesh, self.seed = batch_size, mesh, seed
    rows = np.arange(batch_size) % num_rows(columns)
    self.example = {k: v[rows] for k, v in columns.items()}

  def __call__(self, batch: Features) -> dict[str, jax.Array]:
    batch = dict(batch, weights=np.ones((self.batch_size,), np.float32))
    if self.seed is not None:
      batch["dropout_seed"] = np.full((self.batch_size,), self.seed, np.int32)
    return _device_batch(batch, self.mesh, self.batch_size)


def _device_batch(batch: Features, mesh, global_size: int) -> dict[str, jax.Array]:
  """A batch every process built in full -> the step's global batch (this process's rows)."""
  index, count = sharding.process_batch_share(mesh, global_size)
  local = global_size // count
  rows = {k: v[index * local : (index + 1) * local] for k, v in batch.items()}
  return sharding.global_batch(rows, mesh, global_size)


def _eval_plan(
  inputs: Features, batch_size: int, buckets: tuple[int, ...] | None
) -> list[buckets_lib.EvalBatch]:
  """The prediction batches of a set: rows sorted by length into their buckets' widths, or
  (buckets None) in order at full length."""
  n = num_rows(inputs)
  if buckets:
    return buckets_lib.eval_batch_plan(buckets_lib.row_lengths(inputs), batch_size, buckets)
  full = (inputs["input_ids"].shape[-1],)
  return buckets_lib.eval_batch_plan(np.zeros(n, np.int64), batch_size, full)


def _to_host(tree) -> dict[str, np.ndarray]:
  """Global output arrays -> whole numpy arrays on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    tree = multihost_utils.process_allgather(tree, tiled=True)
  return {k: np.asarray(v) for k, v in jax.device_get(tree).items()}


# Per-position outputs at padding positions: a score no real position has, whatever the
# padded length, so outputs with and without buckets are equal and no n-best slot goes to padding.
PADDING_SCORE = -1e9


def predict_set(
  predict_fn,
  params,
  eval_set: EvalSet,
  batch_size: int,
  mesh,
  buckets: tuple[int, ...] | None = None,
  sequence_outputs: tuple[str, ...] = (),
  compiles: buckets_lib.CompileCounter | None = None,
) -> dict[str, np.ndarray]:
  """head_outputs over a whole set, [N, ...] each, in the set's order.

  buckets: rows sorted by length, each batch padded to the smallest bucket that holds it, the
  outputs written back in the set's order; None: batches in order at full length.
  sequence_outputs: the per-position outputs [N, seq, ...] (padded back to full length; padding
  positions hold PADDING_SCORE either way).
  """
  inputs = {k: eval_set.features[k] for k in MODEL_INPUTS}
  n = num_rows(inputs)
  if n == 0:
    return {}
  full = inputs["input_ids"].shape[-1]
  merged: dict[str, np.ndarray] = {}
  for rows, real, width in _eval_plan(inputs, batch_size, buckets):
    batch = buckets_lib.trim({k: v[rows] for k, v in inputs.items()}, width)
    if compiles is not None:
      compiles.record("predict", batch)
    out = _to_host(predict_fn(params, _device_batch(batch, mesh, batch_size)))
    out = buckets_lib.pad_outputs(out, sequence_outputs, full, PADDING_SCORE)
    for k, v in out.items():
      if k not in merged:
        merged[k] = np.zeros((n,) + v.shape[1:], v.dtype)
      merged[k][rows[:real]] = v[:real]
  if sequence_outputs:
    padding = inputs["attention_mask"] == 0  # [N, seq]
    for k in sequence_outputs:
      merged[k][padding] = PADDING_SCORE
  return merged


def evaluate(
  task: Task,
  predict_fn,
  params,
  sets: list[EvalSet],
  config,
  mesh,
  buckets: tuple[int, ...] | None,
  compiles: buckets_lib.CompileCounter | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
  """("<set>/<metric>" -> value, set name -> predictions). buckets: the run's (`run_buckets`)."""
  results, predictions = {}, {}
  for eval_set in sets:
    outputs = predict_set(
      predict_fn,
      params,
      eval_set,
      config.eval_batch_size,
      mesh,
      buckets=buckets,
      sequence_outputs=task.sequence_outputs,
      compiles=compiles,
    )
    scores, predictions[eval_set.name] = task.score(eval_set, outputs)
    results.update({f"{eval_set.name}/{k}": float(v) for k, v in scores.items()})
  return results, predictions


def run_buckets(config, train_lengths: np.ndarray) -> tuple[int, ...] | None:
  """The run's padded lengths: config.length_buckets, or by default fitted to the training
  rows' lengths ([rows], `buckets.row_lengths`); None when config.length_buckets is empty
  (every batch padded to max_seq_length)."""
  spec = config.get("length_buckets")
  if spec is not None and len(spec) == 0:
    return None
  return buckets_lib.resolve_buckets(spec, config.max_seq_length, train_lengths)


# ============================================================================ the loop


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, shared_steps: dict[str, Any] | None = None
) -> dict[str, float]:
  """Fine-tune `config.init_from` on the config's task; returns the final metrics.

  Rerunning with the same workdir resumes from checkpoints/latest (the same batches follow).
  shared_steps: a dict shared by runs of one config that differ only in seed (finetune/seeds.py):
  the first run puts its jitted steps there, the others reuse them, so they compile once; the
  seed then reaches the dropout RNG through the batch.
  After a SIGTERM / SIGINT stop the result is {"interrupted": True, "step": N, "signal": name};
  a rerun of a finished run returns its results without training ("finished_before" in them is
  not set: they are the stored eval_results).
  """
  if config.get("seeds") is not None and shared_steps is None:
    from finetune.seeds import train_seeds  # one process, several seeds

    return train_seeds(config, workdir)
  config = resolve_config(config, model_config=checkpoint_config(config.get("init_from", "")))
  workdir = paths.path(workdir)  # local (made absolute), or a bucket: gs://...
  with WorkdirRun(workdir, config, SAFE_TO_CHANGE, steps_key="train_steps") as run:
    if run.finished(config.train_steps):
      log.warning(
        "%s holds this run, finished at step %d: nothing to do (results in %s)",
        workdir,
        config.train_steps,
        workdir / layout.EVAL_RESULTS_FILE,
      )
      return dict(run.status.get("results") or {})
    return _train(config, workdir, run, shared_steps)


def _train(
  config: ml_collections.ConfigDict,
  workdir: epath.Path,
  run: WorkdirRun,
  shared_steps: dict[str, Any] | None,
) -> dict[str, Any]:
  """train_and_evaluate's work, inside the run's hold on the workdir."""
  # ---------------------------------------------------------------- data, then the model
  tokenizer = load_tokenizer(config)
  task = get_task(config, tokenizer)
  # The data first: bad data fails in seconds, before the checkpoint is loaded.
  train_features = task.train_features()
  dev_sets = task.eval_sets(final=False)
  dropout = float(config.hidden_dropout_prob)
  model, params = af.from_pretrained(
    config.init_from,
    task.model_class,
    dtype=config.dtype,
    param_dtype=config.param_dtype,
    rng=config.seed,
    hidden_dropout_prob=dropout,
    attention_probs_dropout_prob=dropout,
    classifier_dropout_prob=float(config.classifier_dropout_prob),
    remat=config.remat,
    **task.model_overrides(),
  )
  if tokenizer.vocab_size > model.config.vocab_size:
    raise ValueError(
      f"the tokenizer has {tokenizer.vocab_size} pieces but the model only "
      f"{model.config.vocab_size} embeddings: wrong spiece.model?"
    )
  _check_features(train_features, model.config, "training")
  for s in dev_sets:
    _check_features(s.features, model.config, s.name)
  log.info(
    "%s: %d training rows; evaluation on %s",
    config.family,
    num_rows(train_features),
    {s.name: num_rows(s.features) for s in dev_sets},
  )
  train_lengths = buckets_lib.row_lengths(train_features)
  buckets = run_buckets(config, train_lengths)
  log.info(
    "hyper-parameters (%s defaults): learning_rate %g, batch_size %d, train_steps %d, "
    "warmup_steps %d, max_seq_length %d, hidden_dropout_prob %g, seed %d, length buckets %s",
    config.hyperparameter_defaults,
    config.learning_rate,
    config.batch_size,
    config.train_steps,
    config.warmup_steps,
    config.max_seq_length,
    config.hidden_dropout_prob,
    config.seed,
    _describe_buckets(config, buckets, train_lengths),
  )

  # ---------------------------------------------------------------- state and steps
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
  split = sharding.batch_split(mesh)
  if config.batch_size % (split * config.grad_accum_steps):
    raise ValueError(
      f"batch_size {config.batch_size} must be a multiple of grad_accum_steps "
      f"{config.grad_accum_steps} x {split} batch shards"
    )
  if config.eval_batch_size % split:
    raise ValueError(
      f"eval_batch_size {config.eval_batch_size} must be a multiple of the {split} batch shards"
    )
  # The same builder serves compile-only mode (finetune.steps.compile_program). Runs that differ
  # only in seed (finetune/seeds.py) share one build through `shared_steps`: the seed then comes
  # with each batch (dropout_seed), so N seeds compile once.
  if shared_steps is not None and "steps" in shared_steps:
    steps, compiles = shared_steps["steps"], shared_steps["compiles"]
  else:
    steps = build_steps(
      config,
      model,
      task,
      mesh,
      {k: v[:1] for k, v in train_features.items()},
      train_seed=0 if shared_steps is not None else config.seed,
    )
    compiles = buckets_lib.CompileCounter()
    if shared_steps is not None:
      shared_steps.update(steps=steps, compiles=compiles, best_metric=task.best_metric)
  state, state_shardings = training.init_train_state(
    steps.init_params_fn, steps.optimizer, mesh, jax.random.key(config.seed), params=params
  )
  del params
  train_step, predict_fn = steps.train_step, steps.predict_step

  latest = TrainCheckpointManager(workdir / layout.LATEST_CHECKPOINTS, max_to_keep=1)
  # The best parameters so far: orbax keeps the checkpoint of the highest task.best_metric.
  best = TrainCheckpointManager(
    workdir / layout.BEST_CHECKPOINTS, max_to_keep=1, best_metric=task.best_metric
  )
  restored = latest.restore(training.abstract_with_shardings(state, state_shardings))
  start = 0
  if restored is not None:
    state, _, start = restored
    log.info("resuming at step %d from %s", start, latest.directory)
  writer = MetricWriter(
    workdir,
    config.train_steps,
    initial_step=start,
    progress=config.progress_bar,
    tensorboard=config.tensorboard,
  )

  # ---------------------------------------------------------------- training
  targets = [k for k in train_features if k not in MODEL_INPUTS]
  # The batches are a function of (seed, step): resuming at `start` replays the same sequence.
  columns = {k: train_features[k] for k in list(MODEL_INPUTS) + targets}
  if buckets is None:
    batches = train_batches(columns, config.batch_size, seed=config.seed, start_step=start)
  else:
    batches = buckets_lib.bucketed_train_batches(
      columns, config.batch_size, config.seed, buckets, start_step=start
    )
  # Runs that share the step (several seeds) send their seed with each batch.
  make_batch = TrainBatchMaker(
    columns, config.batch_size, mesh, config.seed if shared_steps is not None else None
  )
  if config.compile_ahead and start < config.train_steps:
    began = time.perf_counter()
    dev_inputs = [{k: s.features[k] for k in MODEL_INPUTS} for s in dev_sets]
    compiled, train_widths, predict_widths = compile_ahead(
      train_step, predict_fn, state, columns, dev_inputs, buckets, make_batch,
      config.eval_batch_size, mesh, config.seed, range(start, config.train_steps),
    )  # fmt: skip
    if compiled:
      log.info(
        "compiled %d programs ahead in %.1f s (train_step widths %s, predict widths %s)",
        compiled, time.perf_counter() - began, ", ".join(map(str, train_widths)),
        ", ".join(map(str, predict_widths)) or "none",
      )  # fmt: skip
  # The writer is closed on every exit, after the final evaluation's rows.
  loop = TrainLoop(run, start, config.train_steps, checkpoints=[latest, best], close=[writer])
  with loop:
    for step in loop:
      batch = next(batches)
      compiles.record("train_step", batch)
      state, metrics = train_step(state, make_batch(batch))
      writer.advance(step)
      if loop.due(config.log_every_steps):
        metrics = jax.device_get(metrics)
        training.check_finite(metrics, step)
        writer.write(step, metrics)
      if loop.due(config.eval_every_steps):
        results, _ = evaluate(
          task, predict_fn, state.params, dev_sets, config, mesh, buckets, compiles
        )
        writer.write(step, results, split="eval")
        latest.save(step, state, {"next_batch": step})
        _offer_best(best, step, state.params, results)
      if loop.stopping:  # SIGTERM / SIGINT
        latest.save(step, state, {"next_batch": step})  # a no-op if this step was just saved
    if loop.interrupted:
      return {"interrupted": True, "step": loop.step, "signal": loop.signal_name}
    best_params, best_step = _best_params(best, state.params, state_shardings.params)
    return _final_evaluation(
      config, workdir, run, task, model, tokenizer, predict_fn, mesh, buckets, compiles,
      writer, best_params, best_step,
    )  # fmt: skip


def _describe_buckets(config, buckets: tuple[int, ...] | None, lengths: np.ndarray) -> str:
  """The log's words for the run's buckets, with the share of the training step's positions
  that are tokens, and what it would be with every row at max_seq_length."""
  unpadded = buckets_lib.token_share(lengths, (config.max_seq_length,))
  if not buckets:
    return f"none (every batch padded to {config.max_seq_length}: {unpadded:.0%} tokens)"
  how = "fitted to the training rows" if config.get("length_buckets") is None else "configured"
  return (
    f"{list(buckets)} ({how}: {buckets_lib.token_share(lengths, buckets):.0%} of the "
    f"training positions are tokens, {unpadded:.0%} at {config.max_seq_length})"
  )


def _final_evaluation(
  config, workdir, run, task, model, tokenizer, predict_fn, mesh, buckets, compiles, writer,
  best_params, best_step,
) -> dict[str, float]:  # fmt: skip
  """The best parameters on the final evaluation sets: results, predictions, the model."""
  lead = jax.process_index() == 0
  # ---------------------------------------------------------------- final evaluation
  final_sets = task.eval_sets(final=True)
  for s in final_sets:
    _check_features(s.features, model.config, s.name)
  results, predictions = evaluate(
    task, predict_fn, best_params, final_sets, config, mesh, buckets, compiles
  )
  results["best_step"] = float(best_step)
  # jit compiles once per shape: the distinct padded lengths are the run's compilations
  writer.write(config.train_steps, {**results, **compiles.counts()}, split="final")
  log.info("final results (best step %d): %s", best_step, results)
  log.info("compilations (one per padded length): %s", compiles.describe())
  if lead:
    prediction_dir = str(workdir / layout.PREDICTIONS_DIR)
    for s in final_sets:
      task.write_predictions(s, predictions[s.name], prediction_dir)
  if jax.process_count() == 1:
    _export(
      model,
      jax.device_get(best_params),
      tokenizer,
      workdir / layout.MODEL_DIR,
      "orbax",
    )
  else:
    # Every process writes its shards; orbax commits the directory only once all are written.
    af.save_pretrained(
      workdir / layout.MODEL_DIR,
      model,
      best_params,
      format="orbax",
      tokenizer=tokenizer,
    )
  if config.export_hf:
    host_params = _gather(best_params)  # every process takes part; the lead writes
    if lead:
      _export(model, host_params, tokenizer, workdir / layout.HF_EXPORT_DIR, "hf")
  if lead:  # last: its presence says the run completed
    write_json(workdir / layout.EVAL_RESULTS_FILE, results)
  run.mark_finished(config.train_steps, config.train_steps, results)
  return results


def _offer_best(best: TrainCheckpointManager, step: int, params: Any, results: dict) -> None:
  """Save `params` when results[best_metric] beats the best kept (ties keep the earlier one).

  The value is process 0's on every process: the save is collective.
  """
  if best.best_metric not in results:
    raise KeyError(
      f"evaluation gave no {best.best_metric!r} (the best-checkpoint metric), only "
      f"{sorted(results)}"
    )
  value = float(same_on_all_processes(float(results[best.best_metric])))
  best_step, best_value = best.best()
  if best_step is None or value > best_value:
    best.save(step, params, {"metric": best.best_metric}, metrics={best.best_metric: value})


def _best_params(best: TrainCheckpointManager, params: Any, shardings: Any) -> tuple[Any, int]:
  """(best params, their step); (`params`, -1) when none was kept."""
  best.wait_until_finished()
  restored = best.restore(training.abstract_with_shardings(params, shardings))
  if restored is None:
    return params, -1
  return restored[0], restored[2]


def _gather(tree):
  """Global arrays -> numpy on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def _export(model, params, tokenizer, path: epath.Path, format: str) -> None:
  """save_pretrained into a temporary sibling, then one rename: no half-written model. In a
  bucket, where a folder's "rename" copies every object, the model is written in place
  (eval_results.json, written after it, says the run completed)."""
  if not paths.is_local(path):
    if path.exists():
      path.rmtree()
    af.save_pretrained(path, model, params, format=format, tokenizer=tokenizer)
    return
  tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
  try:
    af.save_pretrained(tmp, model, params, format=format, tokenizer=tokenizer)
    if path.exists():
      path.rmtree()
    paths.move_tree(tmp, path)
  except BaseException:
    tmp.rmtree(missing_ok=True)
    raise
