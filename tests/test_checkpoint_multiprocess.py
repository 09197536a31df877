"""Checkpoints written by two processes (jax.distributed over gloo) through two managers at once.

Fine-tuning saves checkpoints/latest and checkpoints/best at the same step; each asynchronous save
ends in barriers across the processes. If the two managers' barriers shared names, one could pass
on the other's arrival and commit a checkpoint that one process had not finished writing (orbax:
"ArrayMetadata Store contains metadata from just one process"): CI failed at random on this.
tests/checkpoint_multiprocess_helper.py is one process.
"""

from multiprocess_launch import run_processes


def test_two_managers_save_the_same_steps_over_two_processes(tmp_path):
  results = run_processes("checkpoint_multiprocess_helper.py", 2, 1, 300, workdir=tmp_path, steps=8)
  for code, output in results:
    assert code == 0 and output.rstrip().endswith("OK"), output[-4000:]
