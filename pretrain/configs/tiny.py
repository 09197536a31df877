"""Tiny ALBERT on the built-in corpus: about 2.5 minutes on a 2-core CPU, visibly learning.

    python -m pretrain                     # this config, workdir ./runs/tiny
    python -m pretrain --config=pretrain/configs/tiny.py --workdir=runs/tiny2 \
        --config.num_train_steps=2000      # longer

Model: the "tiny" preset (E=64, H=128, A=2, I=512, the shared layer applied 2 times: 4 learns no
faster per step here, at twice the cost), with a 2000-piece tokenizer trained on the corpus
(the Python standard library's docstrings, ~1.8 MB: with 8000 pieces most are rare, and
sentence-order prediction then memorizes the training documents instead of generalizing).
Sequences of 64 tokens with up to 10 masked positions, batch 64.

AdamW at lr 1e-3 rather than LAMB: at batch 64 it learns faster here (LAMB is the recipe of the
paper's batch 4096; see base.py). Evaluation is on the 5% of documents the training stream never
sees; masked-LM accuracy (chance 1/2000) and sentence-order accuracy (chance 1/2) rise above
chance within the run (figures in pretrain/README.md).
"""

from pretrain.configs import common


def get_config():
  c = common.get_config()
  c.model = "tiny"  # E=64, H=128, L=2, A=2, I=512 (albert_flax.config.PRESETS["tiny"])
  c.dtype = "float32"  # bf16 matmuls are emulated (slow) on most CPUs
  # "dots" by measurement (benchmarks/RESULTS.md, issue 15): tiny f32 train step dots / none
  # 1.54x [1.15, 2.08] on the 2-core EPYC (1.22x, 1.02 vs 1.25 s, in issue 4's table).
  c.remat = "dots"
  c.tokenizer.vocab_size = 2000
  c.data.eval_fraction = 0.05

  c.num_train_steps = 600
  c.batch_size = 64
  c.max_seq_length = 64
  c.max_predictions_per_seq = 10  # 15% of 64 tokens
  c.optimizer = "adamw"
  c.learning_rate = 0.001
  c.warmup_steps = 30

  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  c.eval_every_steps = 200
  c.eval_steps = 8  # 512 held-back examples
  return c
