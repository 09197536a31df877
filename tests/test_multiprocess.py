"""Two CPU processes x 4 devices (jax.distributed over gloo) give the numbers of one process.

Each process of the 2-process run feeds only its share of every global batch, and the train state
and checkpoints are sharded across both; tests/multiprocess_helper.py is one such process.
"""

import json

from multiprocess_launch import finish, free_port, start


def test_two_processes_equal_one_process(tmp_path):
  single_dir, multi_dir = tmp_path / "single", tmp_path / "multi"
  single_dir.mkdir()
  multi_dir.mkdir()
  port = free_port()
  helper = "multiprocess_helper.py"
  procs = [start(helper, 1, 0, 0, 1, out=single_dir)]
  procs += [start(helper, 2, i, port, 4, out=multi_dir) for i in range(2)]
  results = [finish(p, timeout=900) for p in procs]
  for code, output in results:
    assert code == 0, output[-4000:]

  single = json.loads((single_dir / "result.json").read_text())
  multi = json.loads((multi_dir / "result.json").read_text())
  assert single["process_count"] == 1 and multi["process_count"] == 2
  assert multi["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
  assert multi["share_count"] == 2  # each process fed half of every batch
  assert len(single["history"]) == len(multi["history"]) == 4
  for step, (a, b) in enumerate(zip(single["history"], multi["history"])):
    for name in (
      "loss",
      "masked_lm_loss",
      "sentence_order_loss",
      "masked_lm_accuracy",
      "sentence_order_accuracy",
      "grad_norm",
      "learning_rate",
    ):
      assert abs(a[name] - b[name]) <= 2e-5 * max(1.0, abs(a[name])), (step, name, a, b)
