"""The fine-tuning run: `train_and_evaluate(config, workdir)` for every task.

    checkpoint + tokenizer -> task features -> sharded TrainState -> jitted steps (AdamW,
    warm-up + linear decay) -> evaluation every N steps (best checkpoint kept) -> final
    evaluation with the best parameters -> eval_results.json, predictions, the model.

The machinery is the library's (`albert_flax.sharding`, `optim`, `training`); a task
(`finetune.tasks`) brings its data, loss and metrics; `finetune.spec` holds what the run,
multi-seed runs (`finetune.seeds`) and compile-only mode share. Prediction is in
`finetune.predict`, writing the model in `finetune.export`, compile-ahead in
`finetune.compile_ahead`. Outputs in `workdir`:

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

import dataclasses
import functools
import logging
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath
from jax.sharding import Mesh

import albert_flax as af
from albert_flax import flops, paths, sharding
from albert_flax import workdir as layout
from albert_flax.train import profiling, training
from albert_flax.train.checkpoints import TrainCheckpointManager, same_on_all_processes
from albert_flax.train.goodput import GoodputLedger
from albert_flax.train.loop import TrainLoop
from albert_flax.train.metric_writers import MetricWriter
from albert_flax.train.perf import StepRates
from albert_flax.train.run_control import COMMON_SAFE_KEYS, WorkdirRun
from finetune import buckets as buckets_lib
from finetune import seeds, spec
from finetune.batching import TrainBatches, TrainBatchMaker, run_buckets
from finetune.compile_ahead import compile_ahead
from finetune.configs import common as configs_common
from finetune.data import MODEL_INPUTS, Features, num_rows, write_json
from finetune.export import save_models
from finetune.predict import Predictor, evaluate, predict_set
from finetune.spec import checkpoint_config, make_stats_fn, resolve_config
from finetune.steps import SharedSteps, build_steps, make_predict_fn
from finetune.tasks import EvalSet, Task, get_task

# Names this module has always offered (notebooks, tests and benchmarks import them from here).
__all__ = [
  "SAFE_TO_CHANGE",
  "TrainBatchMaker",
  "compile_ahead",
  "load_tokenizer",
  "make_predict_fn",
  "make_stats_fn",
  "predict_set",
  "resolve_config",
  "run_buckets",
  "run_one",
  "train_and_evaluate",
]

log = logging.getLogger(__name__)

# Keys a resumed run may change: see albert_flax.train.run_control.
SAFE_TO_CHANGE = (*COMMON_SAFE_KEYS, "compile_ahead")


def load_tokenizer(config: ml_collections.ConfigDict) -> Any:
  """config.spm_model (a spiece.model or a WordPiece vocab.txt), else the tokenizer `init_from`
  goes with (`af.load_tokenizer`: next to the checkpoint, or in its Hub repository)."""
  return af.load_tokenizer(config.get("spm_model") or config.init_from)


# ============================================================================ the entry point


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Fine-tune `config.init_from` on the config's task; returns the final metrics.

  config.seeds set: one run per seed in workdir/seed_<s>, the best kept (`finetune.seeds`);
  else one run in `workdir` (`run_one`).
  """
  if config.get("seeds") is not None:
    return seeds.train_seeds(config, workdir, run_one)  # one process, several seeds
  return run_one(config, workdir)


def run_one(
  config: ml_collections.ConfigDict, workdir: str, shared_steps: SharedSteps | None = None
) -> dict[str, float]:
  """One fine-tuning run of `config` in `workdir`; returns the final metrics.

  Rerunning with the same workdir resumes from checkpoints/latest (the same batches follow).
  shared_steps: shared by runs of one config that differ only in seed (finetune/seeds.py):
  the first run puts its jitted steps there, the others reuse them, so they compile once (the
  seed is the train step's argument).
  After a SIGTERM / SIGINT stop the result is {"interrupted": True, "step": N, "signal": name};
  a rerun of a finished run returns its results without training ("finished_before" in them is
  not set: they are the stored eval_results).
  """
  config = resolve_config(config, model_config=checkpoint_config(config.get("init_from", "")))
  workdir = paths.path(workdir)  # local (made absolute), or a bucket: gs://...
  with WorkdirRun(
    workdir, config, SAFE_TO_CHANGE, steps_key="train_steps", defaults=configs_common.base_config()
  ) as run:
    if run.finished(config.train_steps):
      log.warning(
        "%s holds this run, finished at step %d: nothing to do (results in %s)",
        workdir,
        config.train_steps,
        workdir / layout.EVAL_RESULTS_FILE,
      )
      return dict(run.status.get("results") or {})
    return _train(config, workdir, run, shared_steps)


# ============================================================================ the run's parts


@dataclasses.dataclass
class Run:
  """What the parts of one run share: its settings and workdir, the hold on the workdir, the
  task, the tokenizer and the model."""

  config: ml_collections.ConfigDict
  workdir: epath.Path
  control: WorkdirRun
  task: Task
  tokenizer: Any
  model: Any


@dataclasses.dataclass
class RunData:
  """A run's data, read before the checkpoint: the training features the step takes [N, ...]
  (`spec.train_columns`), the dev sets, the training rows' lengths and the padded lengths
  (buckets) fitted to them."""

  train_columns: Features
  dev_sets: list[EvalSet]
  train_lengths: np.ndarray
  buckets: tuple[int, ...] | None


def _train(
  config: ml_collections.ConfigDict,
  workdir: epath.Path,
  run: WorkdirRun,
  shared_steps: SharedSteps | None,
) -> dict[str, Any]:
  """run_one's work, inside the run's hold on the workdir."""
  ledger = GoodputLedger(workdir)  # where this start's time goes (albert_flax.train.goodput)
  ctx, data, params = _load(config, workdir, run)
  devices, state = _on_devices(ctx, data, params, shared_steps)
  del params
  train_step, predictor, compiles = devices.train_step, devices.predictor, devices.compiles
  latest, best = _checkpoint_managers(workdir, ctx.task)
  with ledger.phase("restore"):
    restored = latest.restore(training.abstract_with_shardings(state, devices.state_shardings))
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
  columns = data.train_columns
  # The batches are a function of (seed, step): resuming at `start` replays the same sequence.
  train = TrainBatches(columns, config.batch_size, config.seed, data.buckets)
  batches = train.iterate(start)
  make_batch = TrainBatchMaker(columns, config.batch_size, devices.mesh)
  seed = training.step_seed(config.seed)  # the step's dropout seed: runs of several seeds share it
  if config.compile_ahead and start < config.train_steps:
    _compile_ahead(
      config, devices, train, make_batch, data.dev_sets, state=state, seed=seed, start=start
    )
  # The writer is closed on every exit, after the final evaluation's rows.
  # Step time, tokens/s, TFLOP/s, MFU, input waits, memory, slow steps, profiles: see loop.py.
  # The loop waits for the device at log steps only: slow steps are judged per logged interval.
  rates = StepRates(
    functools.partial(flops.model_flops_per_step, ctx.model.config), config.batch_size
  )
  loop = TrainLoop(
    run, start, config.train_steps, checkpoints=[latest, best], close=[writer], goodput=ledger,
    rates=rates, profiler=profiling.from_config(config, workdir),
    slow_step_factor=config.slow_step_factor, steps_synced=False,
  )  # fmt: skip
  with loop:
    for step in loop:
      batch = loop.next_batch(batches)
      compiles.record("train_step", batch)
      state, metrics = train_step(state, make_batch(batch), seed)
      writer.advance(step)
      if loop.due(config.log_every_steps):
        metrics = jax.device_get(metrics)
        training.check_finite(metrics, step)
        writer.write(step, {**metrics, **loop.rates_row()})
      if loop.due(config.eval_every_steps):
        with loop.phase("evaluation"):
          results, _ = evaluate(ctx.task, predictor, state.params, data.dev_sets)
        writer.write(step, results, split="eval")
        with loop.phase("checkpoint_save"):
          latest.save(step, state, {"next_batch": step})
          _offer_best(best, step, state.params, results)
      if loop.stopping:  # SIGTERM / SIGINT
        with loop.phase("checkpoint_save"):
          latest.save(step, state, {"next_batch": step})  # a no-op if this step was just saved
    if loop.interrupted:
      return {"interrupted": True, "step": loop.step, "signal": loop.signal_name}
    best_params, best_step = _best_params(best, state.params, devices.state_shardings.params)
    with loop.phase("evaluation"):  # the final evaluation, its predictions and the model
      return _final_evaluation(ctx, predictor, writer, best_params, best_step)


@dataclasses.dataclass
class OnDevices:
  """The run's jitted steps on its mesh: the train step, the predictor, the train state's
  layout and the count of the steps' compilations (one per padded length)."""

  mesh: Mesh
  state_shardings: training.TrainState
  train_step: training.MeshFunction  # (state, batch, seed) -> (state, metrics)
  predictor: Predictor
  compiles: buckets_lib.CompileCounter


def _on_devices(
  ctx: Run, data: RunData, params: Any, shared_steps: SharedSteps | None
) -> tuple[OnDevices, training.TrainState]:
  """The mesh, the jitted steps (built here, or shared by runs of several seeds) and the train
  state, created in its shardings from the checkpoint's `params`."""
  config = ctx.config
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
  spec.check_mesh(config, mesh)
  steps, compiles = _steps(ctx, mesh, data.train_columns, shared_steps)
  state, state_shardings = training.init_train_state(
    steps.init_params_fn, steps.optimizer, mesh, jax.random.key(config.seed), params=params
  )
  predictor = Predictor(
    steps.predict_step,
    mesh,
    config.eval_batch_size,
    data.buckets,
    ctx.task.sequence_outputs,
    compiles,
  )
  return OnDevices(mesh, state_shardings, steps.train_step, predictor, compiles), state


def _checkpoint_managers(
  workdir: epath.Path, task: Task
) -> tuple[TrainCheckpointManager, TrainCheckpointManager]:
  """(latest: the full train state at the last evaluation, best: the parameters of the highest
  task.best_metric so far, which orbax keeps)."""
  latest = TrainCheckpointManager(workdir / layout.LATEST_CHECKPOINTS, max_to_keep=1)
  best = TrainCheckpointManager(
    workdir / layout.BEST_CHECKPOINTS, max_to_keep=1, best_metric=task.best_metric
  )
  return latest, best


def _load(
  config: ml_collections.ConfigDict, workdir: epath.Path, run: WorkdirRun
) -> tuple[Run, RunData, Any]:
  """The tokenizer, the task, its data, then the model and its parameters, checked together."""
  # ---------------------------------------------------------------- data, then the model
  tokenizer = load_tokenizer(config)
  task = get_task(config, tokenizer)
  # The data first: bad data fails in seconds, before the checkpoint is loaded.
  train_features = task.train_features()
  dev_sets = task.eval_sets(final=False)
  columns = spec.train_columns(config, task, train_features)
  model, params = af.from_pretrained(
    config.init_from,
    task.model_class,
    rng=config.seed,
    **spec.model_overrides(config, task),
  )
  spec.check_model(config, model.config, tokenizer.vocab_size)
  spec.check_features(train_features, model.config, "training")
  for s in dev_sets:
    spec.check_features(s.features, model.config, s.name)
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
  ctx = Run(config, workdir, run, task, tokenizer, model)
  return ctx, RunData(columns, dev_sets, train_lengths, buckets), params


def _steps(
  ctx: Run, mesh, train_features: Features, shared_steps: SharedSteps | None
) -> tuple[Any, buckets_lib.CompileCounter]:
  """The jitted steps and the counter of their compilations: built here, or (several seeds)
  the ones an earlier run of the same config built."""
  config = ctx.config
  # The same builder serves compile-only mode (finetune.steps.compile_program). Runs that differ
  # only in seed (finetune/seeds.py) share one build through `shared_steps`: the seed is the
  # train step's argument, so N seeds compile once.
  if shared_steps is not None and shared_steps.steps is not None:
    return shared_steps.steps, shared_steps.compiles
  steps = build_steps(
    config,
    ctx.model,
    ctx.task,
    mesh,
    {k: v[:1] for k, v in train_features.items()},
  )
  if shared_steps is None:
    return steps, buckets_lib.CompileCounter()
  shared_steps.steps, shared_steps.best_metric = steps, ctx.task.best_metric
  return steps, shared_steps.compiles


def _compile_ahead(
  config, devices: OnDevices, train: TrainBatches, make_batch, dev_sets, *, state, seed, start
) -> None:
  """compile_ahead for the steps from `start` and the dev sets, and a log line of what it did.
  state, seed: the train step's arguments."""
  began = time.perf_counter()
  dev_inputs = [{k: s.features[k] for k in MODEL_INPUTS} for s in dev_sets]
  compiled, train_widths, predict_widths = compile_ahead(
    devices.train_step, state, train, make_batch, devices.predictor, dev_inputs,
    range(start, config.train_steps), seed,
  )  # fmt: skip
  if compiled:
    log.info(
      "compiled %d programs ahead in %.1f s (train_step widths %s, predict widths %s)",
      compiled, time.perf_counter() - began, ", ".join(map(str, train_widths)),
      ", ".join(map(str, predict_widths)) or "none",
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
  ctx: Run, predictor: Predictor, writer: MetricWriter, best_params, best_step: int
) -> dict[str, float]:
  """The best parameters on the final evaluation sets: results, predictions, the model."""
  config, workdir, task, model = ctx.config, ctx.workdir, ctx.task, ctx.model
  compiles = predictor.compiles
  lead = jax.process_index() == 0
  # ---------------------------------------------------------------- final evaluation
  final_sets = task.eval_sets(final=True)
  for s in final_sets:
    spec.check_features(s.features, model.config, s.name)
  results, predictions = evaluate(task, predictor, best_params, final_sets)
  results["best_step"] = float(best_step)
  # jit compiles once per shape: the distinct padded lengths are the run's compilations
  writer.write(config.train_steps, {**results, **compiles.counts()}, split="final")
  log.info("final results (best step %d): %s", best_step, results)
  log.info("compilations (one per padded length): %s", compiles.describe())
  if lead:
    prediction_dir = str(workdir / layout.PREDICTIONS_DIR)
    for s in final_sets:
      task.write_predictions(s, predictions[s.name], prediction_dir)
  save_models(workdir, model, best_params, ctx.tokenizer, config.export_hf)
  if lead:  # last: its presence says the run completed
    write_json(workdir / layout.EVAL_RESULTS_FILE, results)
  ctx.control.mark_finished(config.train_steps, config.train_steps, results)
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
