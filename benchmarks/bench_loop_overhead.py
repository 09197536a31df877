"""What the pretraining loop's own bookkeeping costs per step: one tiny run in this process.

The step period is taken from the host times at which the loop calls the jitted train step
(`pretrain.train.build_steps` is wrapped: the same hook in any version of the loop), median over
the steps after the first few, so two versions of the loop compare on the same yardstick:

    python benchmarks/bench_loop_overhead.py --repo .            # this checkout
    python benchmarks/bench_loop_overhead.py --repo /tmp/before  # another (git archive REV)

Run them interleaved, several times each (benchmarks/RESULTS.md, "Seeing inside a run").
The model is the test suite's small one (hidden 32, 2 layers, batch 8 x 32): steps of ~10 ms, in
which a bookkeeping cost of 0.1 ms would be 1%.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repo", default=".", help="the checkout whose pretrain/ and albert_flax/ run")
  p.add_argument("--steps", type=int, default=80)
  p.add_argument("--log_every", type=int, default=10)
  p.add_argument("--skip", type=int, default=10, help="steps left out of the median at the start")
  args = p.parse_args(argv)
  sys.path.insert(0, os.path.abspath(args.repo))
  import logging

  logging.disable(logging.WARNING)
  from pretrain import train
  from pretrain.configs import tiny

  calls: list[float] = []
  build = train.build_steps

  def timed_build(*a, **k):
    steps = build(*a, **k)
    step = steps.train_step

    def train_step(*x):
      calls.append(time.perf_counter())
      return step(*x)

    return dataclasses.replace(steps, train_step=train_step)

  train.build_steps = timed_build
  words = "the a module function returns value list object class method string file".split()
  with tempfile.TemporaryDirectory() as tmp:
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w") as f:
      for d in range(80):
        for s in range(6):
          f.write(" ".join(words[(d + s + i) % len(words)] for i in range(9)) + ".\n")
        f.write("\n")
    c = tiny.get_config()
    c.data.train_files = corpus
    c.data.eval_fraction = 0.0
    c.tokenizer.vocab_size = 120
    for key, value in dict(
      hidden_size=32,
      embedding_size=16,
      num_attention_heads=2,
      intermediate_size=64,
      num_hidden_layers=2,
    ).items():
      c.model_overrides[key] = value
    c.num_train_steps = args.steps
    c.batch_size, c.max_seq_length, c.max_predictions_per_seq = 8, 32, 5
    c.log_every_steps = args.log_every
    c.eval_steps = 0
    c.checkpoint_every_steps = 10**6  # only the final one, after the timed steps
    c.progress_bar = False
    train.train_and_evaluate(c, os.path.join(tmp, "run"))
  periods = [b - a for a, b in zip(calls[args.skip :], calls[args.skip + 1 :])]
  out = {
    "repo": os.path.abspath(args.repo),
    "median_step_ms": statistics.median(periods) * 1e3,
    "mean_step_ms": statistics.mean(periods) * 1e3,
    "steps": len(periods),
  }
  print(json.dumps(out))
  return out


if __name__ == "__main__":
  main()
