"""One process of a multi-process CPU fine-tuning run (used by test_finetune_multiprocess.py).

    python tests/finetune_multiprocess_helper.py --num_processes=2 --process_id=0 --port=PORT \
        --local_devices=1 --checkpoint=DIR --data=DIR --workdir=DIR --out=DIR

Runs `finetune.train.train_and_evaluate` on SST-2-format data in `workdir` (shared by every
process, as a shared file system would be), then writes what it returned to
out/result_<process_id>.json (outside the workdir, so the program's own files stay countable).
"""

import argparse
import json
import os

import finetune_testdata  # tests/ is this script's directory, so on sys.path
import multiprocess_launch


def main() -> None:
  parser = argparse.ArgumentParser()
  multiprocess_launch.add_process_flags(parser)
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--data", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  multiprocess_launch.init_process(args)

  import jax

  from finetune.configs import glue
  from finetune.train import train_and_evaluate

  # Global batches 8 (train) and 4 (eval) over 2 devices; eval every 5 of 10 steps, so the best
  # checkpoint is chosen between two evaluations. The tests' dev set (11 rows) ends in a batch of
  # 3 real rows + 1 padding row, split over both processes.
  config = finetune_testdata.run_config(
    glue,
    args.checkpoint,
    args.data,
    task="sst2",
    max_seq_length=16,
    train_steps=10,
    learning_rate=1e-2,
    eval_batch_size=4,
    log_every_steps=1,
    eval_every_steps=5,
  )
  results = train_and_evaluate(config, args.workdir)
  with open(os.path.join(args.out, f"result_{args.process_id}.json"), "w") as f:
    json.dump(
      {
        "results": results,
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
      },
      f,
    )


if __name__ == "__main__":
  main()
