"""One process of the 2-process checkpoint test (test_checkpoint_multiprocess.py).

    python tests/checkpoint_multiprocess_helper.py --num_processes=2 --process_id=0 --port=PORT \
        --local_devices=1 --workdir=DIR --steps=N

Two `TrainCheckpointManager`s, as fine-tuning keeps them (checkpoints/latest and checkpoints/best),
save the same steps asynchronously, one right after the other, with an array sharded over both
processes: each save's commit must wait for both processes' writes. Then every checkpoint is
restored and compared with what was saved; the process prints "OK" at the end.
"""

import argparse
import os

import multiprocess_launch  # tests/ is this script's directory, so on sys.path


def main() -> None:
  parser = argparse.ArgumentParser()
  multiprocess_launch.add_process_flags(parser)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=8)
  args = parser.parse_args()
  multiprocess_launch.init_process(args)

  import jax
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec

  from albert_flax.train.checkpoints import TrainCheckpointManager

  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  # ~1 MB per process: big enough that the two processes' writes take different times.
  rows = 64 * jax.device_count()

  def state_at(step):
    local = np.full((rows // jax.process_count(), 4096), step, np.float32)
    local += jax.process_index()
    return {"w": jax.make_array_from_process_local_data(sharding, local, (rows, 4096))}

  managers = [
    TrainCheckpointManager(os.path.join(args.workdir, name), max_to_keep=2)
    for name in ("latest", "best")
  ]
  for step in range(1, args.steps + 1):
    for manager in managers:  # the same step in both, as fine-tuning's evaluation does
      manager.save(step, state_at(step), {"next_batch": step})
  abstract = {"w": jax.ShapeDtypeStruct((rows, 4096), np.float32, sharding=sharding)}
  for manager in managers:
    manager.wait_until_finished()
    assert manager.all_steps() == [args.steps - 1, args.steps], manager.all_steps()
    state, data, step = manager.restore(abstract)
    assert step == args.steps and data == {"next_batch": step}, (step, data)
    for shard in state["w"].addressable_shards:
      expected = step + shard.index[0].start // (rows // jax.process_count())
      np.testing.assert_array_equal(np.asarray(shard.data), expected)
    manager.close()
  print("OK")


if __name__ == "__main__":
  main()
