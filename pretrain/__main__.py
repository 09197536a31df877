"""`python -m pretrain [--config=pretrain/configs/<size>.py] [--workdir=DIR] [--config.KEY=VALUE]`

With no flags: the tiny config (pretrain/configs/tiny.py) in ./runs/tiny. Rerunning the same
command resumes from the newest checkpoint in the workdir. SIGTERM or Ctrl-C saves a checkpoint
and exits with status 75 (resumable); the exit codes are listed in albert_flax/train/program.py.

Several processes: `--jax_distributed` calls `jax.distributed.initialize()` (auto-detected on TPU
pods and SLURM); `--coordinator_address=HOST:PORT --num_processes=N --process_id=I` set it up by
hand (on CPU the processes talk through gloo). See pretrain/README.md.

Compile-only (no TPU needed, libtpu installed): `--compile_only --topology=v4-512 [--num_slices=N]
[--report=FILE.json] [--suggest]` compiles this config's exact steps for that slice and reports
memory per chip, collectives and estimated speed (docs/tpu.md); exit status 1 when it does not fit.
`--save_compiled=DIR` keeps the compiled steps; a run given `--load_compiled=DIR` runs them
instead of compiling, after checking jax, libtpu, slice, mesh and config (albert_flax/train/
compiled_steps.py).

ALBERT_FLAX_HUGE_PAGES=1 in the environment restarts the process once with glibc's huge-page
malloc (see `_reexec_with_huge_pages`): faster CPU steps, Linux/glibc only, opt-in.
"""

import os
import platform
import sys


def _reexec_with_huge_pages() -> None:
  """With ALBERT_FLAX_HUGE_PAGES=1: restart once with glibc's transparent-huge-page malloc.

  XLA's CPU runtime allocates each step's temporaries afresh (~200 MB for the tiny config);
  glibc serves them with mmap and the kernel faults them in 4 KiB at a time, which took ~30% of
  the CPU time of a tiny step on one machine. With glibc.malloc.hugetlb=1 they come in 2 MiB
  pages (steps ~20% faster there). glibc reads the setting only at process start, hence the
  exec (same pid, so signals still reach it). Opt-in: it helps some CPUs and kernels only, and a
  hidden re-exec surprises debuggers and profilers.
  """
  if os.environ.get("ALBERT_FLAX_HUGE_PAGES") != "1" or "GLIBC_TUNABLES" in os.environ:
    return
  if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
    return
  env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.hugetlb=1")
  os.execve(sys.executable, [sys.executable, "-m", "pretrain", *sys.argv[1:]], env)


if __name__ == "__main__":
  _reexec_with_huge_pages()

from etils import epath  # noqa: E402

from albert_flax import paths  # noqa: E402
from albert_flax import workdir as layout  # noqa: E402
from albert_flax.train import program  # noqa: E402
from pretrain import train  # noqa: E402
from pretrain.configs.common import NOT_OVERRIDABLE  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
FLAGS = program.define_flags(
  os.path.join(CONFIGS, "tiny.py"),
  "./runs/tiny",
  "Pretraining config: a file, or the name of one in pretrain/configs (tiny, base, large, "
  "xlarge, xxlarge).",
  configs_dir=CONFIGS,
  key_notes={f"model_overrides.{k}": why for k, why in NOT_OVERRIDABLE.items()},
)


def _summary(workdir: epath.Path, result: dict) -> str:
  if result.get("finished_before"):
    head = f"This run was finished already (step {result['step']}); nothing to do."
  else:
    head = f"Pretraining finished at step {result['step']}."
  lines = [head]
  if result.get("eval"):
    lines.append("  eval:  " + ", ".join(f"{k} {v:.4g}" for k, v in result["eval"].items()))
  if result.get("train"):
    lines.append(
      "  train: " + ", ".join(f"{k} {v:.4g}" for k, v in result["train"].items() if k != "step")
    )
  lines += [
    f"  model:   {workdir} (af.from_pretrained({str(workdir)!r}))",
    f"  metrics: {workdir / layout.METRICS_FILE}, tensorboard --logdir {workdir}",
    "  next:    python -m finetune --config=glue --workdir=DIR "
    f"--config.init_from={workdir} --config.task=TASK --config.data_dir=GLUE_DATA/TASK",
  ]
  return "\n".join(lines)


def main(argv):
  del argv  # program.run refuses positional arguments
  program.exit_if_compile_only(FLAGS, "pretrain.steps")
  program.start(FLAGS, loggers=("pretrain",))
  workdir = paths.path(FLAGS.workdir.value)  # local (made absolute), or a bucket: gs://...
  result = train.train_and_evaluate(
    FLAGS.config.value, workdir, load_compiled=FLAGS.aot.load_compiled.value
  )
  program.finish("pretrain", result, lambda: _summary(workdir, result))


if __name__ == "__main__":
  program.run(main)
