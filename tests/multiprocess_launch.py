"""Launching and joining the processes of a multi-process CPU test (jax.distributed over gloo).

Both sides of the pattern live here: the test starts `python HELPER --num_processes=N
--process_id=I --port=P --local_devices=D ...` per process and joins them (`free_port`, `start`,
`finish`); the helper declares those flags (`add_process_flags`) and, before importing anything
that touches devices, sets its device count and joins the distributed runtime (`init_process`).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))

# XLA_FLAGS for the test session (tests/conftest.py) and every process it starts: XLA's CPU backend
# at LLVM optimization level 0. The suite's programs are tiny and mostly compiled, not run: a
# compile takes ~0.4x the time (the small pretraining step: 5.6 s instead of 13.3 s) and a step
# runs ~2x slower, with the same results (to float rounding). Runs that are mostly steps (the
# default command's learning run) go without it.
FAST_COMPILE_XLA_FLAGS = "--xla_backend_optimization_level=0"


def free_port() -> int:
  """A TCP port on localhost that nothing listens on now (for the coordinator)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(
  helper: str, num_processes: int, process_id: int, port: int, local_devices: int, **flags
) -> subprocess.Popen:
  """Start one process of `helper` (a file in tests/); `flags` become --name=value."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = FAST_COMPILE_XLA_FLAGS  # the helper adds its own device count
  cmd = [
    sys.executable,
    os.path.join(TESTS, helper),
    f"--num_processes={num_processes}",
    f"--process_id={process_id}",
    f"--port={port}",
    f"--local_devices={local_devices}",
  ]
  cmd += [f"--{name}={value}" for name, value in flags.items()]
  return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
  """(exit code, combined output); a process past `timeout` seconds is killed."""
  try:
    output, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    output, _ = proc.communicate()
  return proc.returncode, output


def run_processes(
  helper: str, num_processes: int, local_devices: int, timeout: float, **flags
) -> list[tuple[int, str]]:
  """Runs `num_processes` processes of `helper` as one jax.distributed job (the same flags for
  all) and joins them: [(exit code, combined output)] by process id."""
  port = free_port()
  procs = [
    start(helper, num_processes, i, port, local_devices, **flags) for i in range(num_processes)
  ]
  return [finish(p, timeout=timeout) for p in procs]


def add_process_flags(parser: argparse.ArgumentParser) -> None:
  """The flags `start` passes to every helper."""
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--local_devices", type=int, default=1)


def init_process(args: argparse.Namespace) -> None:
  """In a helper, before JAX creates its backend: this process's CPU device count, the repository
  on sys.path, and with several processes jax.distributed over gloo."""
  device_count = f"--xla_force_host_platform_device_count={args.local_devices}"
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {device_count}".strip()
  sys.path.insert(0, os.path.dirname(TESTS))
  import jax

  if args.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      f"127.0.0.1:{args.port}", num_processes=args.num_processes, process_id=args.process_id
    )
