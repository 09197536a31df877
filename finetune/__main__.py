r"""Command line: python -m finetune --config=finetune/configs/TASK.py --workdir=DIR
    --config.init_from=CHECKPOINT [--config.KEY=VALUE ...]

The work happens in `finetune.train.train_and_evaluate`, which notebooks call directly.

Compile-only (no TPU needed, libtpu installed): `--compile_only --topology=v4-128 [--num_slices=N]
[--report=FILE.json] [--suggest]` compiles this config's exact steps for that slice and reports
memory per chip, collectives and estimated speed (docs/tpu.md); `--config.init_from` may name a
preset (base-v2). Exit status 1 when it does not fit.
"""

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from albert_flax.train import aot

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "A finetune/configs/*.py file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.")
flags.mark_flags_as_required(["config"])
_AOT = aot.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _AOT.compile_only.value:
    from finetune import steps

    sys.exit(_AOT.run(_CONFIG.value, steps.compile_program))
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required")
  # Our progress at INFO; the libraries' (orbax logs every file it writes) at WARNING.
  absl_logging.set_verbosity(absl_logging.WARNING)
  for name in ("finetune", "albert_flax"):
    logging.getLogger(name).setLevel(logging.INFO)
  from finetune.train import train_and_evaluate  # after flag parsing: jax starts here

  train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
