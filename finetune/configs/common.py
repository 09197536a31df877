"""Fields every fine-tuning config shares (imported by glue.py, squad.py, race.py, ner.py, ...).

`base_config` is one list of assignments, each key beside its meaning: it stays one function.

Fields set to a typed placeholder (None) take the task's published value from
`config.per_task[<value of config.per_task_key>]` at start-up, unless given on the command line:
learning_rate, batch_size, train_steps, warmup_steps, hidden_dropout_prob, max_seq_length.
When train_steps is given and warmup_steps is not, the warm-up keeps the published fraction.

The published values are for the released sizes (base..xxlarge). A model whose hidden size is
below SMALL_HIDDEN_SIZE (the tiny preset, small test models) barely learns with them (learning
rate 1e-5 and length 512 are tuned for 768+ hidden units), so for those SMALL_MODEL_DEFAULTS
replace them; the log line that reports the hyper-parameters says which were used.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from albert_flax.train import profiling

# The fields a row of `per_task` may fill.
PER_TASK_FIELDS = (
  "learning_rate",
  "batch_size",
  "train_steps",
  "warmup_steps",
  "hidden_dropout_prob",
  "max_seq_length",
)


def task_row(
  learning_rate: float,
  batch_size: int,
  train_steps: int,
  warmup_steps: int,
  hidden_dropout_prob: float,
  max_seq_length: int,
) -> dict[str, float | int]:
  """One row of a config's `per_task`: a value for each of PER_TASK_FIELDS."""
  return {
    "learning_rate": learning_rate,
    "batch_size": batch_size,
    "train_steps": train_steps,
    "warmup_steps": warmup_steps,
    "hidden_dropout_prob": hidden_dropout_prob,
    "max_seq_length": max_seq_length,
  }


SMALL_HIDDEN_SIZE = 256
# A tiny model pretrained on the built-in corpus, fine-tuned on the built-in real-text tasks
# (finetune/builtin_tasks.py) for 600 steps, 3 seeds (benchmarks/RESULTS.md, "Fine-tuning
# defaults of small models"): at 1e-3 (the former rule, tuned on synthetic data with cue words)
# the updates rewrite the pretrained weights within ~100 steps and every seed ends predicting one
# class (dev accuracy 0.565, 0.500, 0.500); at 1e-4 every seed learns (0.694, 0.685, 0.694, above
# a TF-IDF baseline's 0.651). 128 tokens hold 95% of GLUE's sentences and pairs.
SMALL_MODEL_DEFAULTS = {"learning_rate": 1e-4, "max_seq_length": 128}


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.family = ""  # glue | squad | race | ner (set by each config file)

  # --- model and data
  c.init_from = ""  # required: any path af.from_pretrained takes (orbax, HF dir, TF, hub id)
  # spiece.model or a WordPiece vocab.txt; default: the tokenizer the checkpoint goes with
  # (af.load_tokenizer: spiece.model, vocab.txt, vocab_chinese.txt, tokenizer_config.json)
  c.spm_model = ""
  c.data_dir = ""  # original files; empty: tensorflow-datasets
  c.tfds_data_dir = ""  # tfds data_dir (empty: tfds' default)
  c.tfds_download = True  # let tensorflow-datasets download and prepare missing data
  c.max_train_examples = 0  # 0 = all; a prefix of the data for quick runs
  c.max_eval_examples = 0  # 0 = all; a prefix of each evaluation set

  # --- optimization (filled per task when left None; see PER_TASK_FIELDS)
  # peak learning rate, after the warm-up (None: per task, see below)
  c.learning_rate = config_dict.placeholder(float)
  # training batch, all processes together (None: per task)
  c.batch_size = config_dict.placeholder(int)
  c.train_steps = config_dict.placeholder(int)  # optimizer steps of the run (None: per task)
  # linear warm-up steps, then linear decay to 0 (None: per task)
  c.warmup_steps = config_dict.placeholder(int)
  # tokens per example, longer ones truncated (None: per task)
  c.max_seq_length = config_dict.placeholder(int)
  # ALBERT fine-tuning dropout ("ALBERT DR" of the paper's table 15) on hidden states and
  # attention probabilities; the classifier's dropout is separate (0.1 for every task there).
  c.hidden_dropout_prob = config_dict.placeholder(float)
  c.classifier_dropout_prob = 0.1  # dropout before the task head
  # The original run_classifier / run_squad / run_race optimizer: AdamW, weight decay 0.01 with
  # LayerNorm and biases excluded, beta 0.9 / 0.999, epsilon 1e-6, gradients clipped to global
  # norm 1.0, linear warm-up then linear decay to 0 (google-research/albert optimization.py).
  c.optimizer = "adamw"  # "adamw" (the original fine-tuning) or "lamb"
  c.weight_decay = 0.01  # decoupled weight decay (LayerNorm and biases excluded)
  c.adam_b1 = 0.9  # Adam's first-moment decay
  c.adam_b2 = 0.999  # Adam's second-moment decay
  c.adam_eps = 1e-6  # Adam's epsilon
  # The original AdamWeightDecayOptimizer has no bias correction on its moments, so neither do we
  # (True gives optax.adamw's bias-corrected Adam; the two differ in the first few thousand steps).
  c.adam_bias_correction = False
  c.grad_clip_norm = 1.0  # gradients clipped to this global norm (0: no clipping)
  c.grad_accum_steps = 1  # micro-batches per step (the result equals one big batch)
  # Batches padded to the smallest of these lengths that holds their longest example (see
  # finetune/buckets.py); () pads every batch to max_seq_length. None (the default): fitted to
  # the training rows' lengths, as many as the powers of two from 32 up to max_seq_length
  # (5 for 512), placed where the rows are (multiples of 8; finetune.buckets.fit_buckets), then
  # max_seq_length for longer evaluation rows. On a set of short sentences (SST-2: mean ~13
  # tokens) that is 8, 16, 24, 32, 48 rather than 32, 64, ...: the epoch in ~0.6x the time of
  # powers of two from 32 for the same number of buckets (benchmarks/RESULTS.md, fine-tuning).
  # `--config.length_buckets=32,64,128,256,512` gives those powers of two.
  c.length_buckets = config_dict.placeholder(tuple)
  # Compile the steps of every padded length the run will use before the first step, several at
  # once (XLA compiles a program on one thread): False compiles each at its first use.
  c.compile_ahead = True

  # --- loop
  c.seed = 0  # head initialization, dropout and data order
  # Several fine-tunings in one process (finetune/seeds.py): one number N runs seeds seed ..
  # seed + N - 1, several numbers run those seeds; each in workdir/seed_<s>/, the summary in
  # workdir/seeds_summary.json and the best run's model in workdir/model. None: one run.
  c.seeds = config_dict.placeholder(tuple)
  c.eval_batch_size = 32  # rows per prediction batch
  c.eval_every_steps = 0  # 0: ten evaluations per run (train_steps // 10)
  # Train loss (and grad_norm, learning rate) logged every N steps; 0: 20 times per run, at most
  # every 50 steps (a run that stops learning shows it).
  c.log_every_steps = 0
  c.progress_bar = True  # tqdm on the first process
  c.tensorboard = True  # TensorBoard events in workdir/tensorboard (besides metrics.jsonl)
  profiling.add_config_keys(c)  # profile_steps, slow_step_factor, ...

  # --- devices and numerics
  # device mesh: data x fsdp x tensor over all devices of all processes; -1 = the rest
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  c.dtype = "float32"  # compute dtype (bfloat16 on TPU)
  c.param_dtype = "float32"  # dtype of the stored parameters and optimizer state
  # "none" | "full" | "dots" | "dots_with_no_batch_dims": recompute in the backward pass
  c.remat = "none"

  # --- output
  c.export_hf = False  # also write the fine-tuned model in transformers' format (workdir/hf)

  c.per_task_key = ""  # the config field whose value selects the row of per_task
  c.per_task = ml_collections.ConfigDict()
  return c
