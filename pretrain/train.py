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

import logging
import os
import tempfile
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

import albert_flax as af
from albert_flax import paths, sharding
from albert_flax import workdir as layout
from albert_flax.train import optim, training
from albert_flax.train.checkpoints import TrainCheckpointManager
from albert_flax.train.loop import TrainLoop
from albert_flax.train.metric_writers import MetricWriter
from albert_flax.train.program import ConfigError
from albert_flax.train.run_control import COMMON_SAFE_KEYS, WorkdirRun
from pretrain import corpus, evaluation
from pretrain import data as data_lib
from pretrain.sentence_loss import SENTENCE_LOSSES, training_pairs
from pretrain.steps import build_steps, use_saved_steps

log = logging.getLogger(__name__)

TOKENIZER_FILE = layout.TOKENIZER_FILE
TRAIN_CONFIG_FILE = layout.TRAIN_CONFIG_FILE
CHECKPOINTS_DIR = layout.CHECKPOINTS_DIR

# ====================================================================================== config

# Keys a resumed run may change (num_train_steps may grow): see albert_flax.train.run_control.
SAFE_TO_CHANGE = COMMON_SAFE_KEYS + ("eval_steps",)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raise ConfigError (a ValueError) naming every inconsistent setting."""
  c = config
  problems = []
  for key in (
    "num_train_steps",
    "batch_size",
    "max_seq_length",
    "max_predictions_per_seq",
    "grad_accum_steps",
    "checkpoint_every_steps",
    "eval_every_steps",
    "log_every_steps",
    "checkpoint_max_to_keep",
  ):
    if not isinstance(c[key], int) or c[key] < 1:
      problems.append(f"{key} must be a positive int, got {c[key]!r}")
  if not isinstance(c.eval_steps, int) or c.eval_steps < 0:
    problems.append(f"eval_steps must be an int >= 0, got {c.eval_steps!r}")
  if not c.init_from and c.model not in af.AlbertConfig.preset_names():
    problems.append(f"model must be one of {af.AlbertConfig.preset_names()}, got {c.model!r}")
  if c.optimizer not in optim.OPTIMIZERS:
    problems.append(f"optimizer must be one of {optim.OPTIMIZERS}, got {c.optimizer!r}")
  if not c.learning_rate > 0:
    problems.append(f"learning_rate must be positive, got {c.learning_rate!r}")
  if c.get("sentence_loss", "sop") not in SENTENCE_LOSSES:
    problems.append(f"sentence_loss must be one of {SENTENCE_LOSSES}, got {c.sentence_loss!r}")
  if not isinstance(c.warmup_steps, int) or c.warmup_steps < 0:
    problems.append(f"warmup_steps must be an int >= 0, got {c.warmup_steps!r}")
  if not problems and c.max_predictions_per_seq > c.max_seq_length:
    problems.append("max_predictions_per_seq exceeds max_seq_length")
  if not problems and c.batch_size % c.grad_accum_steps:
    problems.append(
      f"batch_size {c.batch_size} is not divisible by grad_accum_steps {c.grad_accum_steps}"
    )
  if c.data.tfds_name and c.data.train_files not in ("", "builtin"):
    problems.append("give data.train_files or data.tfds_name, not both")
  try:
    tokenizer_kind(c)
  except ValueError as e:
    problems.append(str(e))
  if not problems and not c.init_from:  # the model, as build_model makes it (any vocab_size)
    try:
      model_config = af.AlbertConfig.preset(c.model, **_model_overrides(c))
    except (ValueError, TypeError) as e:
      problems.append(f"model_overrides: {e}")
    else:
      if c.max_seq_length > model_config.max_position_embeddings:
        problems.append(
          f"max_seq_length {c.max_seq_length} exceeds the model's max_position_embeddings "
          f"{model_config.max_position_embeddings}"
        )
  if problems:  # before any work (tokenizer training, data reading): minutes, on a big corpus
    raise ConfigError("Invalid pretraining config: " + "; ".join(problems))


def _share_of_devices(config, mesh) -> tuple[int, int, int]:
  """(share index, share count, local batch size) of this process."""
  split = sharding.batch_split(mesh) * config.grad_accum_steps
  if config.batch_size % split:
    raise ValueError(
      f"batch_size {config.batch_size} must be divisible by grad_accum_steps x "
      f"data x fsdp = {split} (mesh {dict(mesh.shape)})"
    )
  index, count = sharding.process_batch_share(mesh, config.batch_size)
  return index, count, config.batch_size // count


# =================================================================================== tokenizer


def _training_documents_file(config, directory: str) -> str:
  """The training documents (held-out ones excluded) as one sentence per line, for spm."""
  source, builtin_split = data_lib.make_source(
    None if config.data.tfds_name else (config.data.train_files or "builtin"),
    tfds_name=config.data.tfds_name or None,
    tfds_split=config.data.tfds_split,
    tfds_data_dir=config.data.tfds_data_dir or None,
    tfds_field=config.data.tfds_field,
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


def prepare_tokenizer(
  config, workdir: str | os.PathLike
) -> af.AlbertTokenizer | af.WordPieceTokenizer:
  """workdir/spiece.model (SentencePiece) or workdir/vocab.txt (WordPiece, tokenizer_kind):
  kept from an earlier run, copied from the config / init_from, or trained on the training
  documents (by process 0; the others wait, then read it back from the workdir: a bucket when
  the processes are hosts of a pod)."""
  wordpiece = tokenizer_kind(config) == "wordpiece"
  target = epath.Path(workdir) / (layout.WORDPIECE_VOCAB_FILE if wordpiece else TOKENIZER_FILE)
  source = config.tokenizer.get("vocab_file") if wordpiece else config.tokenizer.spm_model
  names = ("vocab.txt", "vocab_chinese.txt") if wordpiece else (TOKENIZER_FILE,)
  if not source and config.init_from:
    found = [epath.Path(config.init_from) / n for n in names]
    source = next((str(f) for f in found if f.is_file()), "")
  if jax.process_index() == 0 and not target.is_file():
    if source:
      if not epath.Path(source).is_file():
        key = "vocab_file" if wordpiece else "spm_model"
        raise FileNotFoundError(f"tokenizer.{key} {source!r} does not exist")
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
            os.path.join(tmp, "vocab.txt"),
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


def _model_overrides(config) -> dict[str, Any]:
  """The AlbertConfig fields the run sets: model_overrides given, dtypes, remat."""
  overrides = {k: v for k, v in config.model_overrides.to_dict().items() if v is not None}
  overrides.update(dtype=config.dtype, param_dtype=config.param_dtype, remat=config.remat)
  return overrides


def build_model(config, vocab_size: int):
  """(model, initial params or None): a preset with overrides, or the `init_from` checkpoint."""
  overrides = _model_overrides(config)
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
    model = af.AlbertForPreTraining(
      af.AlbertConfig.preset(config.model, vocab_size=vocab_size, **overrides)
    )
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
  options = dict(
    masked_lm_prob=d.masked_lm_prob,
    short_seq_prob=d.short_seq_prob,
    max_ngram=d.max_ngram,
    word_segmenter=d.get("word_segmenter") or None,
    process_index=share[0],
    process_count=share[1],
    eval_fraction=d.eval_fraction,
    num_workers=d.num_workers,
    shuffle_buffer=d.shuffle_buffer or None,
    state=state,
    sentence_pairs=sentence_pairs or training_pairs(config.sentence_loss),
  )
  if evaluation and d.eval_files:
    files = d.eval_files
  else:
    options["split"] = ("eval" if evaluation else "train") if not d.eval_files else None
    files = d.train_files or "builtin"
    if d.tfds_name:
      files = None
      options.update(
        tfds_name=d.tfds_name,
        tfds_split=d.tfds_split,
        tfds_data_dir=d.tfds_data_dir or None,
        tfds_field=d.tfds_field,
      )
  # The eval stream draws its own pairs and masks (repeating over the held-back documents).
  seed = config.seed + (1 if evaluation else 0)
  return data_lib.make_pretraining_batches(
    files,
    tokenizer,
    local_batch,
    config.max_seq_length,
    config.max_predictions_per_seq,
    seed,
    **options,
  )


def validate_batch(
  model_config: af.AlbertConfig,
  batch: dict[str, np.ndarray],
  rows: int,
  seq_len: int,
  predictions: int,
) -> None:
  """Shapes and value ranges of a host batch (XLA would clamp bad gather indices silently)."""
  expected = {
    "input_ids": (rows, seq_len),
    "attention_mask": (rows, seq_len),
    "token_type_ids": (rows, seq_len),
    "masked_lm_positions": (rows, predictions),
    "masked_lm_ids": (rows, predictions),
    "masked_lm_weights": (rows, predictions),
    "sentence_order_label": (rows,),
  }
  for name, shape in expected.items():
    if name not in batch:
      raise ValueError(f"batch lacks {name!r}")
    if tuple(batch[name].shape) != shape:
      raise ValueError(
        f"batch field {name!r} has shape {tuple(batch[name].shape)}, expected {shape}"
      )
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
  with WorkdirRun(workdir, config, SAFE_TO_CHANGE) as run:
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
        "preempted": False,
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

  # ----------------------------------------------------------------- state and steps
  # The same builder serves compile-only mode (pretrain.steps.compile_program).
  steps = build_steps(config, model, mesh)
  if load_compiled:
    steps = use_saved_steps(steps, config, mesh, load_compiled)
    log.info("train and eval steps loaded from %s (compiled ahead of time)", load_compiled)
  train_step, eval_step = steps.train_step, steps.eval_step
  checkpoints = TrainCheckpointManager(
    workdir / CHECKPOINTS_DIR, max_to_keep=config.checkpoint_max_to_keep
  )
  restored = None
  if checkpoints.latest_step() is not None:
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
  del init_params

  # ----------------------------------------------------------------- data
  train_batches = make_batches(
    config, tokenizer, local_batch, (share_index, share_count), evaluation=False, state=data_state
  )
  eval_batches: dict | None = None  # pair kind -> held-back batches (pretrain.evaluation)

  def next_global_batch(iterator) -> dict[str, jax.Array]:
    host = next(iterator)
    validate_batch(
      model.config, host, local_batch, config.max_seq_length, config.max_predictions_per_seq
    )
    return sharding.global_batch(host, mesh, config.batch_size)

  # ----------------------------------------------------------------- loop
  writer = MetricWriter(
    workdir, config.num_train_steps, initial_step=step, progress=config.progress_bar
  )
  last_train, last_eval = {}, {}
  pending: list[tuple[int, dict]] = []  # (step, device metrics) since the last log
  timer_start, timer_steps = None, 0
  loop = TrainLoop(
    run, step, config.num_train_steps, checkpoints=[checkpoints], close=[writer, train_batches]
  )
  with loop:
    for step in loop:
      batch = next_global_batch(train_batches)
      state, metrics = train_step(state, batch)
      pending.append((step, metrics))
      if len(pending) > 1:  # check the step before, while this one runs
        training.check_finite(jax.device_get(pending[-2][1]), pending[-2][0])
      if timer_start is None:  # start timing after the first (compiling) step
        jax.block_until_ready(metrics)
        timer_start, timer_steps = time.perf_counter(), 0
      else:
        timer_steps += 1
      writer.advance(step)

      if loop.due(config.log_every_steps) or loop.stopping:
        training.check_finite(jax.device_get(metrics), step)
        last_train = _mean_metrics([m for _, m in pending])
        elapsed = time.perf_counter() - timer_start
        last_train["examples_per_second"] = (
          config.batch_size * timer_steps / elapsed if timer_steps and elapsed > 0 else 0.0
        )
        writer.write(step, last_train)
        pending, timer_start, timer_steps = [], time.perf_counter(), 0

      if config.eval_steps and loop.due(config.eval_every_steps):
        if eval_batches is None:
          eval_batches = evaluation.load_eval_sets(
            config,
            lambda kind: make_batches(
              config, tokenizer, local_batch, (share_index, share_count), True, None, kind
            ),
            next_global_batch,
          )
        last_eval = evaluation.evaluate(eval_step, state.params, eval_batches, config.sentence_loss)
        writer.write(step, last_eval, split="eval")
        timer_start = time.perf_counter()  # eval time is not training throughput

      if loop.due(config.checkpoint_every_steps) or loop.stopping:
        training.check_finite(jax.device_get(metrics), step)  # never save a diverged state
        checkpoints.save(step, state, train_batches.get_state())
    step = loop.step
    if not loop.interrupted and step == config.num_train_steps:  # every save is complete
      af.save_pretrained(workdir, model, state.params, format="orbax")
      run.mark_finished(step, config.num_train_steps, {"train": last_train, "eval": last_eval})
  return {
    "train": last_train,
    "eval": last_eval,
    "step": step,
    "interrupted": loop.interrupted,
    "preempted": loop.interrupted,
    "signal": loop.signal_name,
    "finished_before": False,
  }
