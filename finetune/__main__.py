r"""Command line: python -m finetune --config=finetune/configs/TASK.py --workdir=DIR
    --config.init_from=CHECKPOINT [--config.KEY=VALUE ...]

The work happens in `finetune.train.train_and_evaluate`, which notebooks call directly.
"""

import logging

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "A finetune/configs/*.py file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Our progress at INFO; the libraries' (orbax logs every file it writes) at WARNING.
  absl_logging.set_verbosity(absl_logging.WARNING)
  for name in ("finetune", "albert_flax"):
    logging.getLogger(name).setLevel(logging.INFO)
  from finetune.train import train_and_evaluate  # after flag parsing: jax starts here

  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
