r"""Command line: python -m finetune --config=finetune/configs/TASK.py --workdir=DIR
    --config.init_from=CHECKPOINT [--config.KEY=VALUE ...]

The work happens in `finetune.train.train_and_evaluate`, which notebooks call directly.

Compile-only (no TPU needed, libtpu installed): `--compile_only --topology=v4-128 [--num_slices=N]
[--report=FILE.json] [--suggest]` compiles this config's exact steps for that slice and reports
memory per chip, collectives and estimated speed (docs/tpu.md); `--config.init_from` may name a
preset (base-v2). Exit status 1 when it does not fit.
Several processes: `--jax_distributed`, or `--coordinator_address=HOST:PORT --num_processes=N
--process_id=I`, as for pretraining. SIGTERM or Ctrl-C saves a checkpoint and exits with status
75 (rerun the same command to resume); the exit codes are listed in albert_flax/train/program.py.
"""

import os

from absl import app
from etils import epath

from albert_flax import paths
from albert_flax import workdir as layout
from albert_flax.train import program
from finetune.train import train_and_evaluate

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
FLAGS = program.define_flags(
  None,
  None,
  "Fine-tuning config: a file, or the name of one in finetune/configs (glue, squad, race, ner, "
  "clue, cmrc).",
  configs_dir=CONFIGS,
  help_config=os.path.join(CONFIGS, "glue.py"),
)


def _summary(workdir: epath.Path, results: dict) -> str:
  lines = ["Fine-tuning finished."]
  lines += [f"  {k}: {v:.4g}" for k, v in sorted(results.items()) if isinstance(v, float)]
  lines += [
    f"  model:       {workdir / layout.MODEL_DIR} (af.from_pretrained({str(workdir)!r}))",
    f"  metrics:     {workdir / layout.EVAL_RESULTS_FILE}, {workdir / layout.METRICS_FILE}",
    f"  predictions: {workdir / layout.PREDICTIONS_DIR}",
  ]
  return "\n".join(lines)


def main(argv):
  del argv  # program.run refuses positional arguments
  if FLAGS.aot.save_compiled.value or FLAGS.aot.load_compiled.value:
    # A fine-tuning run compiles a step per length bucket and seed layout, not one program.
    raise app.UsageError("--save_compiled / --load_compiled are for pretraining runs only")
  program.exit_if_compile_only(FLAGS, "finetune.steps")
  program.start(FLAGS, loggers=("finetune",))
  workdir = paths.path(FLAGS.workdir.value)  # local (made absolute), or a bucket: gs://...
  results = train_and_evaluate(FLAGS.config.value, workdir)
  program.finish("finetune", results, lambda: _summary(workdir, results))


if __name__ == "__main__":
  program.run(main)
