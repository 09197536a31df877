"""`python -m pretrain [--config=pretrain/configs/<size>.py] [--workdir=DIR] [--config.KEY=VALUE]`

With no flags: the tiny config (pretrain/configs/tiny.py) in ./runs/tiny. Rerunning the same
command resumes from the newest checkpoint in the workdir.

Several processes: `--jax_distributed` calls `jax.distributed.initialize()` (auto-detected on TPU
pods and SLURM); `--coordinator_address=HOST:PORT --num_processes=N --process_id=I` set it up by
hand (on CPU the processes talk through gloo). See pretrain/README.md.

Compile-only (no TPU needed, libtpu installed): `--compile_only --topology=v4-512 [--num_slices=N]
[--report=FILE.json] [--suggest]` compiles this config's exact steps for that slice and reports
memory per chip, collectives and estimated speed (docs/tpu.md); exit status 1 when it does not fit.
"""

import logging
import os
import platform
import sys


def _reexec_with_huge_pages() -> None:
  """Restart this process once with glibc's transparent-huge-page malloc (Linux/glibc only).

  XLA's CPU runtime allocates each step's temporaries afresh (~200 MB for the tiny config);
  glibc serves them with mmap and the kernel faults them in 4 KiB at a time, which took ~30% of
  the CPU time of a tiny step here. With glibc.malloc.hugetlb=1 they come in 2 MiB pages (steps
  ~20% faster). glibc reads the setting only at process start, hence the exec (same pid, so
  signals still reach it). Set GLIBC_TUNABLES yourself (even empty) to opt out.
  """
  if sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ or platform.libc_ver()[0] != "glibc":
    return
  env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.hugetlb=1")
  os.execve(sys.executable, [sys.executable, "-m", "pretrain", *sys.argv[1:]], env)


if __name__ == "__main__":
  _reexec_with_huge_pages()

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  os.path.join(os.path.dirname(__file__), "configs", "tiny.py"),
  "Pretraining config file.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  "./runs/tiny",
  "Where checkpoints, metrics and the final model go; a rerun resumes from here.",
)
_DISTRIBUTED = flags.DEFINE_bool(
  "jax_distributed", False, "Call jax.distributed.initialize() with auto-detection."
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
from albert_flax.train import aot  # noqa: E402

_AOT = aot.define_flags()


def main(argv):
  del argv
  if _AOT.compile_only.value:
    from pretrain import steps

    sys.exit(_AOT.run(_CONFIG.value, steps.compile_program))
  import jax

  if _COORDINATOR.value:
    # CPU processes need a collectives backend; harmless on accelerators.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      _COORDINATOR.value, num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value
    )
  elif _DISTRIBUTED.value:
    jax.distributed.initialize()
  # Our progress at INFO on process 0; orbax's per-save chatter (absl logging) only at WARNING.
  logging.getLogger().setLevel(logging.INFO if jax.process_index() == 0 else logging.WARNING)
  absl_logging.set_verbosity(absl_logging.WARNING)
  for name in ("pretrain", "albert_flax"):
    logging.getLogger(name).setLevel(logging.INFO if jax.process_index() == 0 else logging.WARNING)
  from pretrain import train

  result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print({"step": result["step"], "train": result["train"], "eval": result["eval"]})


if __name__ == "__main__":
  app.run(main)
