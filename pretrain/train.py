"""ALBERT pretraining: MLM + sentence-order prediction (or NSP, or none: `config.sentence_loss`,
see pretrain.sentence_loss), one jitted step, resumable.

    from pretrain import train
    from pretrain.configs import tiny
    train.train_and_evaluate(tiny.get_config(), "runs/tiny")

The workdir ends up holding: spiece.model or vocab.txt (the tokenizer), config.json (the model's),
train_config.json (this run's config), checkpoints/ (orbax, with the data position),
metrics.jsonl, tensorboard/, and at the end params/, the final model:
`af.from_pretrained(workdir)` loads it (or the newest checkpoint, mid-run).

Restarting with the same command resumes from the newest complete checkpoint, data position
included, so an interrupted run ends with the metrics of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import tempfile
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

import albert_flax as af
from albert_flax import flops, paths, sharding
from albert_flax import workdir as layout
from albert_flax.train import profiling, training
from albert_flax.train.checkpoints import TrainCheckpointManager
from albert_flax.train.goodput import GoodputLedger
from albert_flax.train.loop import TrainLoop
from albert_flax.train.metric_writers import MetricWriter
from albert_flax.train.perf import StepRates
from albert_flax.train.run_control import COMMON_SAFE_KEYS, WorkdirRun
from pretrain import corpus, evaluation, spec
from pretrain import data as data_lib
from pretrain.configs import common as configs_common
from pretrain.sentence_loss import training_pairs
from pretrain.spec import tokenizer_kind, validate_config
from pretrain.steps import build_steps, use_saved_steps

log = logging.getLogger(__name__)

# ====================================================================================== config

# Keys a resumed run may change (num_train_steps may grow): see albert_flax.train.run_control.
SAFE_TO_CHANGE = COMMON_SAFE_KEYS + ("eval_steps",)


def _share_of_devices(config, mesh) -> tuple[int, int, int]:
  """(share index, share count, local batch size) of this process."""
  spec.check_mesh(config, mesh)
  index, count = sharding.process_batch_share(mesh, config.batch_size)
  return index, count, config.batch_size // count


# =================================================================================== tokenizer


def _training_documents_file(config, directory: str) -> str:
  """The training documents (held-out ones excluded) as one sentence per line, for spm."""
  tfds = _tfds_dataset(config.data)
  source, builtin_split = data_lib.make_source(
    None if tfds else (config.data.train_files or "builtin"), tfds=tfds
  )
  split = builtin_split or ("all" if config.data.eval_files else "train")
  path = os.path.join(directory, "tokenizer_corpus.txt")
  lines = 0
  with open(path, "w", encoding="utf-8") as f:
    for doc, _ in corpus.select_split(
      source.documents(0, None, 0, 1, config.seed), split, config.data.eval_fraction
    ):
      for sentence in doc:
        f.write(sentence.replace("\n", " ") + "\n")
      lines += len(doc)
      if lines >= config.tokenizer.max_training_sentences:
        break
  if not lines:  # name the user's input, not this temporary file
    raise ValueError(
      "the training corpus holds no text to train a tokenizer on (only whitespace?): "
      f"{config.data.tfds_name or config.data.train_files}"
    )
  return path


def prepare_tokenizer(
  config, workdir: str | os.PathLike
) -> af.AlbertTokenizer | af.WordPieceTokenizer:
  """workdir/spiece.model (SentencePiece) or workdir/vocab.txt (WordPiece, tokenizer_kind):
  kept from an earlier run, copied from the config / init_from, or trained on the training
  documents (by process 0; the others wait, then read it back from the workdir: a bucket when
  the processes are hosts of a pod)."""
  wordpiece = tokenizer_kind(config) == "wordpiece"
  target = epath.Path(workdir) / (
    layout.WORDPIECE_VOCAB_FILE if wordpiece else layout.TOKENIZER_FILE
  )
  source = config.tokenizer.get("vocab_file") if wordpiece else config.tokenizer.spm_model
  # A checkpoint's vocabulary: ours, or brightmart albert_zh's vocab_chinese.txt.
  names = (
    (layout.WORDPIECE_VOCAB_FILE, "vocab_chinese.txt") if wordpiece else (layout.TOKENIZER_FILE,)
  )
  if not source and config.init_from:
    found = [epath.Path(config.init_from) / n for n in names]
    source = next((str(f) for f in found if f.is_file()), "")
  if jax.process_index() == 0 and not target.is_file():
    if source:
      key = "vocab_file" if wordpiece else "spm_model"
      if not epath.Path(source).is_file():
        raise FileNotFoundError(f"tokenizer.{key} {source!r} does not exist")
      try:  # read the user's file first: a bad one is named as given, never copied
        (af.WordPieceTokenizer if wordpiece else af.AlbertTokenizer)(source)
      except Exception as e:  # sentencepiece raises RuntimeError / OSError on a non-model
        kind = "WordPiece vocabulary" if wordpiece else "SentencePiece model"
        raise ValueError(f"tokenizer.{key} {source!r} is not a {kind}: {e}") from None
      paths.write_bytes(target, epath.Path(source).read_bytes())
    else:
      log.info(
        "training a %d-piece %s tokenizer on the training documents",
        config.tokenizer.vocab_size,
        "WordPiece" if wordpiece else "SentencePiece",
      )
      with tempfile.TemporaryDirectory() as tmp:
        corpus_file = _training_documents_file(config, tmp)
        if wordpiece:
          model = af.train_wordpiece_vocab(
            corpus_file,
            config.tokenizer.vocab_size,
            os.path.join(tmp, layout.WORDPIECE_VOCAB_FILE),
            do_lower_case=config.tokenizer.do_lower_case,
            seed=config.seed,
          )
        else:
          model = af.train_tokenizer(
            corpus_file,
            config.tokenizer.vocab_size,
            os.path.join(tmp, "spiece"),
            seed=config.seed,
            do_lower_case=config.tokenizer.do_lower_case,
            hard_vocab_limit=False,
          )
        paths.write_bytes(target, epath.Path(model).read_bytes())
  _barrier("tokenizer")
  cls = af.WordPieceTokenizer if wordpiece else af.AlbertTokenizer
  return cls(str(target), do_lower_case=config.tokenizer.do_lower_case)


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(f"albert_flax_pretrain_{name}")


# ================================================================================ model, data


def build_model(config, vocab_size: int):
  """(model, initial params or None): a preset with overrides, or the `init_from` checkpoint."""
  overrides = spec.model_overrides(config)
  if config.init_from:
    step = str(config.get("init_from_step") or "")
    model, params = af.from_pretrained(
      config.init_from,
      af.AlbertForPreTraining,
      step=int(step) if step.isdigit() else (step or None),
      **overrides,
    )
    if model.config.vocab_size != vocab_size:
      raise ValueError(
        f"init_from {config.init_from!r} has vocab_size {model.config.vocab_size} "
        f"but the tokenizer has {vocab_size}; set tokenizer.spm_model (or vocab_file) to the "
        "checkpoint's spiece.model (or vocab.txt)"
      )
  else:
    model = af.AlbertForPreTraining(spec.model_config(config, vocab_size))
    params = None
  if config.max_seq_length > model.config.max_position_embeddings:
    raise ValueError(
      f"max_seq_length {config.max_seq_length} exceeds the model's "
      f"max_position_embeddings {model.config.max_position_embeddings}"
    )
  return model, params


def make_batches(
  config,
  tokenizer,
  local_batch: int,
  share: tuple[int, int],
  evaluation: bool,
  state: dict | None = None,
  sentence_pairs: str | None = None,
) -> data_lib.PretrainingIterator:
  """The training stream, or the held-back evaluation stream, of this process's share.

  Held-back text is data.eval_files when given, else the `eval_fraction` of the training
  documents that the training stream then skips. `sentence_pairs` ("sop" / "nsp"): the kind of
  pairs, by default the one `config.sentence_loss` trains on.
  """
  d = config.data
  options = data_lib.DataOptions(
    masked_lm_prob=d.masked_lm_prob,
    short_seq_prob=d.short_seq_prob,
    max_ngram=d.max_ngram,
    word_segmenter=d.get("word_segmenter") or None,
    process_index=share[0],
    process_count=share[1],
    eval_fraction=d.eval_fraction,
    num_workers=d.num_workers,
    shuffle_buffer=d.shuffle_buffer or None,
    example_options={"sentence_pairs": sentence_pairs or training_pairs(config.sentence_loss)},
  )
  if evaluation and d.eval_files:
    files = d.eval_files
  else:
    split = ("eval" if evaluation else "train") if not d.eval_files else None
    files = d.train_files or "builtin"
    tfds = _tfds_dataset(d)
    if tfds:
      files = None
    options = dataclasses.replace(options, split=split, tfds=tfds)
  # The eval stream draws its own pairs and masks (repeating over the held-back documents).
  seed = config.seed + (1 if evaluation else 0)
  return data_lib.make_pretraining_batches(
    files,
    tokenizer,
    local_batch,
    config.max_seq_length,
    config.max_predictions_per_seq,
    seed,
    options=options,
    state=state,
  )


def _tfds_dataset(d: ml_collections.ConfigDict) -> data_lib.TfdsDataset | None:
  """config.data's tensorflow-datasets source, or None (data.tfds_name empty)."""
  if not d.tfds_name:
    return None
  return data_lib.TfdsDataset(d.tfds_name, d.tfds_split, d.tfds_data_dir or None, d.tfds_field)


# ======================================================================================= loop


def _mean_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
  fetched = jax.device_get(rows)
  return {k: float(np.mean([r[k] for r in fetched])) for k in fetched[0]}


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str | epath.PathLike, load_compiled: str | None = None
) -> dict[str, Any]:
  """Pretrain as `config` says, in `workdir` (resuming from its newest checkpoint if any).

  load_compiled: a directory of steps saved by `--compile_only --save_compiled`, run instead of
  compiling them (checked first: pretrain.steps.use_saved_steps).

  Returns {"train": last logged train metrics, "eval": last eval metrics, "step": final step,
  "interrupted": bool (SIGTERM / SIGINT: a checkpoint of `step` is saved), "signal": its name,
  "finished_before": bool (the workdir held the finished run already: its results)}.
  Raises WorkdirBusyError when another run holds the workdir, ValueError when the workdir's run
  was started with another config (see albert_flax.train.run_control).
  """
  validate_config(config)
  workdir = paths.path(workdir)  # local (made absolute), or a bucket: gs://...
  with WorkdirRun(workdir, config, SAFE_TO_CHANGE, defaults=configs_common.get_config()) as run:
    if run.finished(config.num_train_steps):
      log.warning(
        "%s holds this run, finished at step %d: nothing to do (the model is in %s; pass a "
        "larger --config.num_train_steps to train on)",
        workdir,
        config.num_train_steps,
        workdir,
      )
      results = run.status.get("results") or {}
      return {
        "train": results.get("train", {}),
        "eval": results.get("eval", {}),
        "step": run.status["step"],
        "interrupted": False,
        "finished_before": True,
      }
    return _train(config, workdir, run, load_compiled)


def _train(
  config: ml_collections.ConfigDict,
  workdir: epath.Path,
  run: WorkdirRun,
  load_compiled: str | None,
) -> dict[str, Any]:
  """train_and_evaluate's work, inside the run's hold on the workdir."""
  ledger = GoodputLedger(workdir)  # where this start's time goes (albert_flax.train.goodput)
  mesh, share, tokenizer, model, init_params = _setup(config, workdir)
  steps, checkpoints, state, data_state, step = _steps_and_state(
    config, workdir, mesh, model, init_params, load_compiled, ledger
  )
  del init_params
  train_step, eval_step = steps.train_step, steps.eval_step
  batches = _RunBatches(config, tokenizer, model.config, mesh, share, data_state)
  train_batches = batches.train

  # ----------------------------------------------------------------- loop
  writer = MetricWriter(
    workdir, config.num_train_steps, initial_step=step, progress=config.progress_bar
  )
  last_train, last_eval = {}, {}
  pending: list[tuple[int, dict]] = []  # (step, device metrics) since the last log
  # Step time, tokens/s, TFLOP/s, MFU, input waits, memory, slow steps, profiles: see loop.py.
  rates = StepRates(
    functools.partial(
      flops.model_flops_per_step, model.config, num_predictions=config.max_predictions_per_seq
    ),
    config.batch_size,
  )
  loop = TrainLoop(
    run, step, config.num_train_steps, checkpoints=[checkpoints], close=[writer, train_batches],
    goodput=ledger, rates=rates, profiler=profiling.from_config(config, workdir),
    slow_step_factor=config.slow_step_factor,
  )  # fmt: skip
  with loop:
    for step in loop:
      batch = batches.global_batch(train_batches, loop.next_batch)
      state, metrics = train_step(state, batch)
      pending.append((step, metrics))
      if len(pending) > 1:  # check the step before, while this one runs
        training.check_finite(jax.device_get(pending[-2][1]), pending[-2][0])
      if step == loop.start + 1:  # the first step (it compiled) runs within its own time
        jax.block_until_ready(metrics)
      writer.advance(step)

      if loop.due(config.log_every_steps) or loop.stopping:
        training.check_finite(jax.device_get(metrics), step)
        last_train = _mean_metrics([m for _, m in pending])
        last_train.update(loop.rates_row())
        writer.write(step, last_train)
        pending = []

      if config.eval_steps and loop.due(config.eval_every_steps):
        with loop.phase("evaluation"):
          last_eval = evaluation.evaluate(
            eval_step, state.params, batches.eval_sets(), config.sentence_loss
          )
        writer.write(step, last_eval, split="eval")

      if loop.due(config.checkpoint_every_steps) or loop.stopping:
        training.check_finite(jax.device_get(metrics), step)  # never save a diverged state
        with loop.phase("checkpoint_save"):
          checkpoints.save(step, state, train_batches.get_state())
    step = loop.step
    if not loop.interrupted and step == config.num_train_steps:  # every save is complete
      af.save_pretrained(workdir, model, state.params, format="orbax")
      run.mark_finished(step, config.num_train_steps, {"train": last_train, "eval": last_eval})
  return _result(last_train, last_eval, step, loop)


class _RunBatches:
  """The run's batches: this process's share of the training stream (`train`), its rows made
  the step's global batch (`global_batch`, checked against the spec first), and the held-back
  evaluation sets, read at the first evaluation (`eval_sets`)."""

  def __init__(self, config, tokenizer, model_config, mesh, share, data_state: dict | None):
    self.config, self.tokenizer, self.mesh = config, tokenizer, mesh
    self.model_config = model_config
    self.share_index, self.share_count, self.local_batch = share
    self.train = self._stream(False, data_state)
    self._eval: dict | None = None  # pair kind -> held-back batches (pretrain.evaluation)

  def _stream(self, evaluation: bool, state=None, kind: str | None = None):
    return make_batches(
      self.config, self.tokenizer, self.local_batch, (self.share_index, self.share_count),
      evaluation, state, kind,
    )  # fmt: skip

  def global_batch(self, iterator, take=next) -> dict[str, jax.Array]:
    c = self.config
    host = take(iterator)
    spec.validate_batch(
      self.model_config, host, self.local_batch, c.max_seq_length, c.max_predictions_per_seq
    )
    return sharding.global_batch(host, self.mesh, c.batch_size)

  def eval_sets(self) -> dict:
    if self._eval is None:
      self._eval = evaluation.load_eval_sets(
        self.config, lambda kind: self._stream(True, None, kind), self.global_batch
      )
    return self._eval


def _result(last_train: dict, last_eval: dict, step: int, loop: TrainLoop) -> dict[str, Any]:
  """train_and_evaluate's result of a run that trained (see there)."""
  return {
    "train": last_train,
    "eval": last_eval,
    "step": step,
    "interrupted": loop.interrupted,
    "signal": loop.signal_name,
    "finished_before": False,
    "goodput": loop.goodput_totals,
  }


def _setup(config: ml_collections.ConfigDict, workdir: epath.Path):
  """(mesh, (share index, share count, local batch size), tokenizer, model, its initial params
  or None) of the run; the model's config.json written to the workdir."""
  # ----------------------------------------------------------------- mesh, tokenizer, model
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
  share_index, share_count, local_batch = _share_of_devices(config, mesh)
  tokenizer = prepare_tokenizer(config, workdir)
  model, init_params = build_model(config, tokenizer.vocab_size)
  if jax.process_index() == 0:
    model.config.to_json_file(workdir / layout.CONFIG_FILE, "AlbertForPreTraining")
  log.info(
    "mesh %s, %d processes, %d-row local batches; model %s",
    dict(mesh.shape),
    jax.process_count(),
    local_batch,
    model.config,
  )
  return mesh, (share_index, share_count, local_batch), tokenizer, model, init_params


def _steps_and_state(
  config, workdir, mesh, model, init_params, load_compiled: str | None, ledger: GoodputLedger
):
  """(steps, checkpoint manager, train state, data position, step): resumed from the newest
  checkpoint (its reading charged to the ledger's "restore"), or fresh (from `init_params` when
  given)."""
  # ----------------------------------------------------------------- state and steps
  # The same builder serves compile-only mode (pretrain.steps.compile_program).
  steps = build_steps(config, model, mesh)
  if load_compiled:
    steps = use_saved_steps(steps, config, mesh, load_compiled)
    log.info("train and eval steps loaded from %s (compiled ahead of time)", load_compiled)
  checkpoints = TrainCheckpointManager(
    workdir / layout.CHECKPOINTS_DIR, max_to_keep=config.checkpoint_max_to_keep
  )
  restored = None
  if checkpoints.latest_step() is not None:
    with ledger.phase("restore"):
      restored = checkpoints.restore(
        training.abstract_with_shardings(steps.abstract_state, steps.state_shardings)
      )
  if restored is not None:
    state, data_state, step = restored
    log.info("resumed from the checkpoint at step %d", step)
  else:
    state, _ = training.init_train_state(
      steps.init_params_fn, steps.optimizer, mesh, jax.random.key(config.seed), params=init_params
    )
    data_state, step = None, 0
  return steps, checkpoints, state, data_state, step
