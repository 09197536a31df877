"""What the pretraining loop's own bookkeeping costs per step: one tiny run in this process.

The step period is taken from the host times at which the loop calls the jitted train step
(`pretrain.train.build_steps` is wrapped: the same hook in any version of the loop), median over
the steps after the first few, so two versions of the loop compare on the same yardstick:

    python benchmarks/bench_loop_overhead.py --repo .            # this checkout
    python benchmarks/bench_loop_overhead.py --repo /tmp/before  # another (git archive REV)

Run them interleaved, several times each (benchmarks/RESULTS.md, "Seeing inside a run").
`--bookkeeping` times the loop's own work alone instead: TrainLoop over steps whose body only
takes a batch (`loop.next_batch`) and makes a log row every `--log_every` steps, with and
without the goodput ledger, rates and profiler (microseconds per step, no model, no device).
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
  p.add_argument("--bookkeeping", action="store_true", help="the loop's own work alone")
  args = p.parse_args(argv)
  if args.bookkeeping:
    return bookkeeping(args.steps, args.log_every)
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
    "repo": os.path.dirname(os.path.dirname(os.path.abspath(train.__file__))),
    "median_step_ms": statistics.median(periods) * 1e3,
    "mean_step_ms": statistics.mean(periods) * 1e3,
    "steps": len(periods),
  }
  print(json.dumps(out))
  return out


def bookkeeping(steps: int, log_every: int, repeats: int = 5) -> dict:
  """Microseconds per step of TrainLoop's bookkeeping, with and without the instrumentation
  (the better of `repeats` interleaved runs of `steps` steps each)."""
  import functools
  import itertools

  import ml_collections
  import numpy as np

  from albert_flax import flops
  from albert_flax.config import AlbertConfig
  from albert_flax.train.goodput import GoodputLedger
  from albert_flax.train.loop import TrainLoop
  from albert_flax.train.perf import StepRates
  from albert_flax.train.profiling import StepProfiler
  from albert_flax.train.run_control import WorkdirRun

  batch = {"input_ids": np.ones((8, 128), np.int32), "attention_mask": np.ones((8, 128), np.int32)}
  flops_fn = functools.partial(flops.model_flops_per_step, AlbertConfig.preset("base-v2"))
  best = {"without": float("inf"), "with": float("inf")}
  with tempfile.TemporaryDirectory() as tmp:
    config = ml_collections.ConfigDict({"num_train_steps": steps})
    for r, kind in itertools.product(range(repeats), ("without", "with")):
      workdir = os.path.join(tmp, f"{kind}{r}")
      with WorkdirRun(workdir, config) as run:
        extra = {}
        if kind == "with":
          extra = dict(
            goodput=GoodputLedger(workdir),
            rates=StepRates(flops_fn, 8),
            profiler=StepProfiler(workdir),
          )
        began = time.perf_counter()
        with TrainLoop(run, 0, steps, **extra) as loop:
          batches = itertools.repeat(batch)
          for _ in loop:
            loop.next_batch(batches)
            if loop.due(log_every):
              loop.rates_row()
        best[kind] = min(best[kind], (time.perf_counter() - began) / steps)
  out = {f"{k}_us_per_step": v * 1e6 for k, v in best.items()}
  out["added_us_per_step"] = (best["with"] - best["without"]) * 1e6
  print(json.dumps(out))
  return out


if __name__ == "__main__":
  main()
