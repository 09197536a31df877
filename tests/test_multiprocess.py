"""Two CPU processes x 4 devices (jax.distributed over gloo) give the numbers of one process.

Each process of the 2-process run feeds only its share of every global batch, and the train state
and checkpoints are sharded across both; tests/multiprocess_helper.py is one such process.
"""

import json
import os
import socket
import subprocess
import sys

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiprocess_helper.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(out, num_processes, process_id, port, local_devices):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # the helper sets its own device count
  cmd = [sys.executable, HELPER, f"--num_processes={num_processes}",
         f"--process_id={process_id}", f"--port={port}", f"--local_devices={local_devices}",
         f"--out={out}"]
  return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _finish(proc, timeout=900):
  try:
    output, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    output, _ = proc.communicate()
  return proc.returncode, output


def test_two_processes_equal_one_process(tmp_path):
  single_dir, multi_dir = tmp_path / "single", tmp_path / "multi"
  single_dir.mkdir()
  multi_dir.mkdir()
  port = _free_port()
  procs = [_start(single_dir, 1, 0, 0, 1)]
  procs += [_start(multi_dir, 2, i, port, 4) for i in range(2)]
  results = [_finish(p) for p in procs]
  for code, output in results:
    assert code == 0, output[-4000:]

  single = json.loads((single_dir / "result.json").read_text())
  multi = json.loads((multi_dir / "result.json").read_text())
  assert single["process_count"] == 1 and multi["process_count"] == 2
  assert multi["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
  assert multi["share_count"] == 2  # each process fed half of every batch
  assert len(single["history"]) == len(multi["history"]) == 4
  for step, (a, b) in enumerate(zip(single["history"], multi["history"])):
    for name in ("loss", "masked_lm_loss", "sentence_order_loss", "masked_lm_accuracy",
                 "sentence_order_accuracy", "grad_norm", "learning_rate"):
      assert abs(a[name] - b[name]) <= 2e-5 * max(1.0, abs(a[name])), (step, name, a, b)
