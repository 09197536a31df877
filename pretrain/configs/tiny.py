"""Tiny ALBERT on the built-in corpus: a few minutes on a laptop CPU, visibly learning.

    python -m pretrain                     # this config, workdir ./runs/tiny
    python -m pretrain --config=pretrain/configs/tiny.py --workdir=runs/tiny \
        --config.num_train_steps=2000      # longer

The held-back documents of the built-in corpus (Python standard library docstrings) are the eval
set; masked-LM and sentence-order accuracy rise well above chance (1/V and 1/2) within the run.
"""

from pretrain.configs import common


def get_config():
  c = common.get_config()
  c.model = "tiny"  # E=64, H=128, L=4, A=2, I=512 (albert_flax.config.PRESETS["tiny"])
  c.dtype = "float32"
  c.tokenizer.vocab_size = 8000
  c.data.eval_fraction = 0.05

  c.num_train_steps = 600
  c.batch_size = 64
  c.max_seq_length = 128
  c.max_predictions_per_seq = 20
  c.learning_rate = 0.002
  c.warmup_steps = 60

  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  c.eval_every_steps = 200
  c.eval_steps = 4
  return c
