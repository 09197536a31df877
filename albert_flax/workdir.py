"""The layout of a workdir and of a saved model: every file and folder name, in one place.

A pretraining or fine-tuning workdir (written by `python -m pretrain|finetune`) and a model
directory (written by `af.save_pretrained`) are read by `af.from_pretrained`, by both programs
when they resume, and by users. Their names live here only; everything else imports them.

    <saved model>/                    af.save_pretrained(path, ...)
      config.json                     CONFIG_FILE (transformers' config, with "architectures")
      params/                         ORBAX_PARAMS_DIR (format="orbax")
      integrity.json                  INTEGRITY_FILE: each array's fingerprint
      spiece.model                    TOKENIZER_FILE (when a tokenizer was given), or
      vocab.txt                       WORDPIECE_VOCAB_FILE, with
      tokenizer_config.json           TOKENIZER_CONFIG_FILE (transformers' name)
      README.md                       MODEL_CARD_FILE (albert_flax.checkpoints.model_card)

    <pretraining workdir>/
      config.json                     the model's config (AlbertForPreTraining)
      train_config.json               TRAIN_CONFIG_FILE: the program's whole config
      spiece.model                    the tokenizer the run uses (trained or copied),
                                      or vocab.txt (a WordPiece vocabulary)
      checkpoints/<step>/state/       CHECKPOINTS_DIR / STATE_ITEM: the train state
      checkpoints/<step>/data/        DATA_ITEM: the data iterators' positions
      checkpoints/<step>/integrity/   INTEGRITY_ITEM: each array's fingerprint
      metrics.jsonl, tensorboard/     METRICS_FILE, TENSORBOARD_DIR
      run_status.json                 RUN_STATUS_FILE: "running" | "interrupted" | "finished", step
      goodput.json                    GOODPUT_FILE: where the wall time of every start went
      tensorboard/plugins/profile/    PROFILE_DIR: jax.profiler traces (--config.profile_steps)
      PROFILE_REQUEST                 PROFILE_REQUEST_FILE: create it to profile the next steps
      config_history/                 CONFIG_HISTORY_DIR: train_config.json of every start
      LOCK                            LOCK_FILE: held by the run working here (host, pid)
      params/                         the final model (when the run finished)

    <fine-tuning workdir>/            (run_status.json, config_history/, LOCK as above)
      checkpoints/latest/<step>/      LATEST_CHECKPOINTS: the train state at the last evaluation
      checkpoints/best/<step>/        BEST_CHECKPOINTS: the best parameters so far
      eval_results.json               EVAL_RESULTS_FILE: final metrics (written last)
      predictions/                    PREDICTIONS_DIR
      model/                          MODEL_DIR: the fine-tuned model (a saved model, above)
      hf/                             HF_EXPORT_DIR: the same in transformers' format
      metrics.jsonl, tensorboard/
      goodput.json, tensorboard/plugins/profile/, PROFILE_REQUEST   (as above)
      seed_<s>/, seeds_summary.json   SEED_RUN_DIR, SEEDS_SUMMARY_FILE: --config.seeds=N runs
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from etils import epath

from albert_flax import paths

CONFIG_FILE = "config.json"
ORBAX_PARAMS_DIR = "params"
TOKENIZER_FILE = "spiece.model"
WORDPIECE_VOCAB_FILE = "vocab.txt"  # the tokenizer when it is a WordPiece vocabulary (Chinese)
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # which tokenizer class, and its settings
MODEL_CARD_FILE = "README.md"
TRAIN_CONFIG_FILE = "train_config.json"
CHECKPOINTS_DIR = "checkpoints"
STATE_ITEM, DATA_ITEM, INTEGRITY_ITEM = "state", "data", "integrity"
INTEGRITY_FILE = "integrity.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
LATEST_CHECKPOINTS = os.path.join(CHECKPOINTS_DIR, "latest")
BEST_CHECKPOINTS = os.path.join(CHECKPOINTS_DIR, "best")
EVAL_RESULTS_FILE = "eval_results.json"
PREDICTIONS_DIR = "predictions"
MODEL_DIR = "model"
HF_EXPORT_DIR = "hf"
SEEDS_SUMMARY_FILE = "seeds_summary.json"  # --config.seeds=N: mean, std, best over the runs
SEED_RUN_DIR = "seed_{seed}"  # one fine-tuning workdir per seed
RUN_STATUS_FILE = "run_status.json"
GOODPUT_FILE = "goodput.json"  # albert_flax.train.goodput: every start's wall time, by part
# Where jax.profiler.start_trace(workdir/tensorboard) writes its traces, and TensorBoard's profile
# plugin looks for them.
PROFILE_DIR = os.path.join(TENSORBOARD_DIR, "plugins", "profile")
PROFILE_REQUEST_FILE = "PROFILE_REQUEST"  # holds a number of steps (or nothing): profile them
CONFIG_HISTORY_DIR = "config_history"
LOCK_FILE = "LOCK"

# What a run's status says (RUN_STATUS_FILE's "status"). A run killed outright stays "running".
RUNNING, INTERRUPTED, FINISHED = "running", "interrupted", "finished"


def read_run_status(directory: str | os.PathLike) -> dict[str, Any] | None:
  """The run's status record ({"status", "step", "total_steps", ...}), or None when absent.
  `directory` may be local or gs://..."""
  path = paths.path(directory) / RUN_STATUS_FILE
  try:
    return paths.read_json(path)
  except (OSError, json.JSONDecodeError):
    return None


def write_run_status(directory: str | os.PathLike, status: str, step: int, **fields: Any) -> None:
  """Replace the status record atomically (a reader never sees half of it; paths.write_json)."""
  record = {"status": status, "step": int(step), **fields}
  path = paths.path(directory) / RUN_STATUS_FILE
  paths.write_json(path, record, indent=2, sort_keys=True, default=str)


# ---------------------------------------------------- google-research/albert's TF1 layout


def _checkpoint_step(prefix: str) -> float:
  m = re.search(r"-(\d+)$", prefix)
  return int(m.group(1)) if m else -1


def find_tf_checkpoint(path: str) -> tuple[str, str] | None:
  """(checkpoint prefix, albert_config.json path) if `path` is an original checkpoint, else None.

  `path` (local or gs://...) is a directory holding albert_config.json and model.ckpt-*.index (the
  newest step wins; a `checkpoint` state file, if present, names the one to use), or a prefix
  `dir/model.ckpt-N`.
  """
  given = paths.path(path)
  index = given.parent / (given.name + ".index")
  if index.is_file():
    directory, prefix = given.parent, os.fspath(given)
  elif given.is_dir():
    directory = given
    prefixes = [os.fspath(f)[: -len(".index")] for f in given.glob("*.index")]
    if not prefixes:
      return None
    state_file = given / "checkpoint"
    named = None
    if state_file.is_file():
      m = re.search(r'^model_checkpoint_path:\s*"(.*)"', state_file.read_text(), re.M)
      if m:
        named = os.fspath(given / m.group(1))  # a relative name is joined, an absolute kept
    if named is not None and named in prefixes:
      prefix = named
    else:
      prefix = max(prefixes, key=lambda p: (_checkpoint_step(p), p.endswith("best"), p))
  else:
    return None
  return prefix, _tf_config_file(directory, prefix)


def _tf_config_file(directory: epath.Path, prefix: str) -> str:
  """albert_config.json, else the one albert_config_<size>.json albert_zh ships."""
  config = directory / "albert_config.json"
  if config.is_file():
    return os.fspath(config)
  sized = sorted(os.fspath(c) for c in directory.glob("albert_config_*.json"))
  if len(sized) == 1:
    return sized[0]
  if sized:
    raise ValueError(
      f"Found the TF checkpoint {prefix} and several configs next to it, "
      f"{[paths.path(c).name for c in sized]}: keep the one that goes with it, or name it "
      "albert_config.json"
    )
  raise FileNotFoundError(
    f"Found the TF checkpoint {prefix} but no albert_config.json next to it in {directory}"
  )
