r"""Fine-tuning speed: ours length-bucketed vs ours padded to 512 vs transformers' PyTorch ALBERT
with dynamic padding, side by side in one run.

    PYTHONPATH=. python benchmarks/bench_finetune.py --size base-v2 --sets sst2,mnli \
        --dtypes float32,bfloat16 --examples 128 --batch-size 16 [--json out.json]

Data: a GLUE-like classification set of synthetic token ids whose lengths follow SST-2's
(sentences: mean ~13 tokens with [CLS]/[SEP], long tail to ~66) or MNLI's (pairs: mean ~40,
tail to ~200) distributions, drawn from gamma distributions fitted to those figures; no download
(tokenization is not what is timed). Each side trains `--epochs` epochs over `--examples` rows
from random weights with the original fine-tuning optimizer (AdamW, weight decay 0.01,
eps 1e-6, global-norm clipping 1.0, linear warm-up and decay), then predicts the same rows:

  ours bucketed   finetune.buckets batches with the program's default buckets (fitted to the
                  rows' lengths: as many widths as the powers of two from 32 to 512, placed
                  where the rows are; finetune.buckets.fit_buckets), the step of
                  finetune.train (albert_flax.train.training.make_train_step); the time
                  counts every compilation (one per padded length, train and predict steps,
                  compiled side by side before the first step as the program does:
                  config.compile_ahead).
  ours powers     the bucketed side with powers of two from 32 to 512
                  (config.length_buckets=32,64,128,256,512; the default before fitted buckets).
  ours finer      the bucketed side with the buckets of `--finer-buckets` (default 16, then
                  powers of two from 32, set by config.length_buckets).
  ours rerun      the bucketed side again in the same process after jax.clear_caches(): its
                  programs come from the persistent compilation cache the first run wrote (the
                  programs' default, --compilation_cache_dir), as in a second run of the program
                  (another seed, a rerun).
  ours padded     every batch padded to 512 (length_buckets=(), the behaviour before buckets).
                  Its epoch is extrapolated: compile + `--padded-steps` timed steps, scaled to
                  the epoch's step count (the full epoch would take most of the run); its
                  prediction likewise, from `--padded-steps` batches.
  torch dynamic   transformers' AlbertForSequenceClassification, each batch padded to its
                  longest row (DataCollatorWithPadding), torch.optim.AdamW with the same
                  settings; bf16 through torch.autocast (float32 parameters, as ours).

Reported: training examples/s and seconds to the epochs (compile included; ours also split into
compile and steps, with the mean step time per padded length), prediction examples/s (compiled
ahead: the prediction compiles count in the training time), and ratios bucketed (and rerun) /
padded and / torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MAX_LENGTH = 512
LEARNING_RATE, WARMUP_FRACTION = 2e-5, 0.1


def synthetic_lengths(kind: str, n: int, seed: int) -> np.ndarray:
  """Token counts (with [CLS]/[SEP]) shaped like SST-2's sentences or MNLI's pairs."""
  rng = np.random.default_rng(seed)
  if kind == "sst2":
    lengths = 3 + rng.gamma(2.0, 5.0, n)  # mean 13, 95th percentile ~ 27
    return np.clip(lengths.astype(int), 4, 66)
  if kind == "mnli":
    lengths = 5 + rng.gamma(4.0, 8.75, n)  # mean 40, 95th percentile ~ 72
    return np.clip(lengths.astype(int), 8, 250)
  raise ValueError(f"unknown set {kind!r}: sst2 or mnli")


def synthetic_features(kind: str, n: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
  """input_ids / token_type_ids / attention_mask [n, 512] and labels [n]."""
  lengths = synthetic_lengths(kind, n, seed)
  rng = np.random.default_rng(seed + 1)
  positions = np.arange(MAX_LENGTH)[None, :]
  mask = (positions < lengths[:, None]).astype(np.int32)
  ids = rng.integers(5, vocab, (n, MAX_LENGTH)).astype(np.int32) * mask
  ids[:, 0] = 2
  ids[np.arange(n), lengths - 1] = 3
  types = np.zeros_like(ids)
  if kind == "mnli":  # the hypothesis: the last third of each pair
    types = ((positions >= (2 * lengths // 3)[:, None]) & (mask == 1)).astype(np.int32)
  labels = rng.integers(0, 3 if kind == "mnli" else 2, n).astype(np.int32)
  return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}


# --------------------------------------------------------------------------- ours


def _our_steps(size: str, kind: str, dtype: str, task, steps: int, mesh):
  """(train state, jitted train step, jitted prediction step) of our side: the preset with the
  task's head, from random weights, the original fine-tuning optimizer over `steps` steps."""
  import jax
  import jax.numpy as jnp

  import albert_flax as af
  from albert_flax.train import optim, training
  from finetune.train import make_predict_fn, make_stats_fn

  cfg = dataclasses.replace(
    af.AlbertConfig.preset(size), dtype=dtype, num_labels=3 if kind == "mnli" else 2
  )
  model = task.model_class(cfg)
  optimizer, _ = optim.create_optimizer(
    "adamw",
    LEARNING_RATE,
    steps,
    int(steps * WARMUP_FRACTION),
    weight_decay=0.01,
    grad_clip_norm=1.0,
    eps=1e-6,
  )

  def init(rng):
    return model.init(rng, jnp.ones((1, 8), jnp.int32))["params"]

  state, shardings = training.init_train_state(init, optimizer, mesh, jax.random.key(0))
  step = training.make_train_step(
    make_stats_fn(model, task), task.loss_weights, optimizer, shardings, mesh, seed=None
  )
  return state, step, make_predict_fn(model, task, shardings.params, mesh)


def _time_steps(step, state, batches, make_batch, seed, timed: int):
  """`timed` train steps, each timed to its result: (state, each batch's width, durations)."""
  import jax

  step_widths, durations = [], []
  for _ in range(timed):
    batch = next(batches)
    t = time.perf_counter()
    state, metrics = step(state, make_batch(batch), seed)
    jax.block_until_ready(metrics)
    durations.append(time.perf_counter() - t)
    step_widths.append(batch["input_ids"].shape[-1])
  return state, step_widths, durations


def run_ours(args, kind, features, dtype, bucket_spec) -> dict[str, float]:
  """bucket_spec: config.length_buckets (None: the default, fitted buckets; (): padded to 512)."""

  from albert_flax import sharding
  from albert_flax.train import training
  from finetune import buckets as buckets_lib
  from finetune.batching import TrainBatches
  from finetune.configs import glue
  from finetune.predict import Predictor
  from finetune.tasks import EvalSet
  from finetune.tasks.glue import GlueTask
  from finetune.train import (
    TrainBatchMaker,
    compile_ahead,
    predict_set,
    resolve_config,
    run_buckets,
  )

  config = glue.get_config()
  config.update(dict(init_from="unused", task=kind, max_seq_length=MAX_LENGTH))
  config.update(dict(length_buckets=bucket_spec))
  config = resolve_config(config)
  buckets = run_buckets(config, buckets_lib.row_lengths(features))  # None: padded to 512
  bucketed = buckets is not None
  task = GlueTask(config, None)
  n = len(features["labels"])
  steps = args.epochs * n // args.batch_size
  mesh = sharding.make_mesh(-1, 1, 1)
  state, step, predict_fn = _our_steps(args.size, kind, dtype, task, steps, mesh)
  seed = training.step_seed(0)  # the step's argument, as the program passes it
  train = TrainBatches(features, args.batch_size, 0, buckets)
  batches = train.iterate(0)
  timed = steps if bucketed else min(steps, args.padded_steps)
  inputs = {k: v for k, v in features.items() if k != "labels"}

  make_batch = TrainBatchMaker(features, args.batch_size, mesh)
  # As the program does (config.compile_ahead): every train and predict program the epoch and
  # the prediction need, compiled side by side before the first step; the time counts in the
  # epoch's.
  start = time.perf_counter()
  compiles, widths, _ = compile_ahead(
    step,
    state,
    train,
    make_batch,
    Predictor(predict_fn, mesh, args.batch_size, buckets),
    [inputs],
    range(steps),
    seed,
  )
  compile_s = time.perf_counter() - start
  state, step_widths, durations = _time_steps(step, state, batches, make_batch, seed, timed)
  assert len(set(step_widths) - set(widths)) == 0, (step_widths, widths)
  steps_s = float(np.sum(durations)) * steps / timed  # extrapolated when timed < steps (padded)
  # Padded, every batch costs the same: its prediction is timed on `--padded-steps` batches and
  # scaled to the set (at 1024 rows the whole set would take ~18 minutes on 2 cores).
  eval_rows = n if bucketed else min(n, args.padded_steps * args.batch_size)
  eval_set = EvalSet("dev", {k: v[:eval_rows] for k, v in inputs.items()}, False)
  t = time.perf_counter()
  predict_set(predict_fn, state.params, eval_set, args.batch_size, mesh, buckets)
  eval_s = (time.perf_counter() - t) * n / eval_rows
  by_width = {
    int(w): float(np.mean([d for d, x in zip(durations, step_widths) if x == w]))
    for w in sorted(set(step_widths))
  }
  return {
    "train_s": compile_s + steps_s,
    "compile_s": compile_s,
    "steps_s": steps_s,
    "step_s_by_width": by_width,
    "train_ex_s": steps * args.batch_size / (compile_s + steps_s),
    "eval_ex_s": n / eval_s,
    "compiles": compiles,
    "buckets": list(buckets or (MAX_LENGTH,)),
    "extrapolated": timed < steps,
  }


# --------------------------------------------------------------------------- transformers


def run_torch(args, kind, features, dtype) -> dict[str, float]:
  import torch
  import transformers
  from impls import hf_config_dict

  import albert_flax as af

  torch.manual_seed(0)
  cfg = af.AlbertConfig.preset(args.size)
  hf = transformers.AlbertConfig(**hf_config_dict(cfg), num_labels=3 if kind == "mnli" else 2)
  model = transformers.AlbertForSequenceClassification(hf)
  model.train()
  n = len(features["labels"])
  steps = args.epochs * n // args.batch_size
  decay = [
    p for name, p in model.named_parameters() if "LayerNorm" not in name and "bias" not in name
  ]
  rest = [p for name, p in model.named_parameters() if "LayerNorm" in name or "bias" in name]
  optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
    lr=LEARNING_RATE,
    eps=1e-6,
  )
  schedule = transformers.get_linear_schedule_with_warmup(
    optimizer, int(steps * WARMUP_FRACTION), steps
  )
  autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")
  lengths = features["attention_mask"].sum(-1)
  rng = np.random.default_rng(0)
  order = np.concatenate([rng.permutation(n) for _ in range(args.epochs)])

  def padded(rows):  # DataCollatorWithPadding: the batch's longest row
    width = int(lengths[rows].max())
    return {
      k: torch.from_numpy(features[k][rows, :width]).long()
      for k in ("input_ids", "token_type_ids", "attention_mask")
    }

  start = time.perf_counter()
  for s in range(steps):
    rows = order[s * args.batch_size : (s + 1) * args.batch_size]
    with autocast:
      loss = model(**padded(rows), labels=torch.from_numpy(features["labels"][rows]).long()).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
  total = time.perf_counter() - start
  model.eval()
  t = time.perf_counter()
  with torch.no_grad(), autocast:
    for s in range(0, n, args.batch_size):
      model(**padded(np.arange(s, min(n, s + args.batch_size))))
  eval_s = time.perf_counter() - t
  return {"train_s": total, "train_ex_s": steps * args.batch_size / total, "eval_ex_s": n / eval_s}


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", default="base-v2", help="preset: tiny, base-v2, large-v2, ...")
  parser.add_argument("--sets", default="sst2,mnli")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--examples", type=int, default=128)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--padded-steps", type=int, default=2, help="timed steps at 512")
  parser.add_argument(
    "--sides",
    default="bucketed,powers,rerun,padded,torch",
    help="rerun: the bucketed side again after jax.clear_caches(), its steps loaded from the "
    "persistent compilation cache the first run wrote (as a second run of the program)",
  )
  parser.add_argument(
    "--finer-buckets",
    default="16,32,64,128,256,512",
    help="config.length_buckets of the 'finer' side",
  )
  parser.add_argument("--torch-threads", type=int, default=os.cpu_count())
  parser.add_argument("--json", default=None)
  return parser.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)

  import jax
  import torch

  from finetune.buckets import default_buckets

  torch.set_num_threads(args.torch_threads)
  info = common.machine_info()
  common.print_machine(info)
  sides = args.sides.split(",")
  bucket_specs = {  # config.length_buckets of our sides; the bucketed one keeps the default
    "padded": (),
    "powers": default_buckets(MAX_LENGTH),
    "finer": tuple(int(w) for w in args.finer_buckets.split(",")),
  }
  # As the programs do (--compilation_cache_dir), in a fresh folder: the first bucketed run
  # writes the cache (its cost counts), the rerun reads it.
  import tempfile

  from albert_flax.train import program

  program.use_compilation_cache(tempfile.mkdtemp(prefix="bench_finetune_cache_"), explicit=True)
  rows = []
  for kind in args.sets.split(","):
    import albert_flax as af

    vocab = af.AlbertConfig.preset(args.size).vocab_size
    features = synthetic_features(kind, args.examples, vocab, seed=0)
    lengths = features["attention_mask"].sum(-1)
    print(
      f"## {kind}: {args.examples} rows, mean length {lengths.mean():.1f}, "
      f"95th percentile {np.percentile(lengths, 95):.0f}, max {lengths.max()}"
    )
    for dtype in args.dtypes.split(","):
      result = {}
      for side in sides:  # interleaved: each side once per (set, dtype)
        if side == "torch":
          result[side] = run_torch(args, kind, features, dtype)
        else:
          if side == "rerun":
            jax.clear_caches()  # what a new process has: only the persistent cache
          # Sides that share widths with the bucketed one compile them themselves, as a first
          # run would, rather than read the cache it wrote; only the rerun reads it.
          jax.config.update("jax_enable_compilation_cache", side in ("bucketed", "rerun"))
          result[side] = run_ours(args, kind, features, dtype, bucket_specs.get(side))
          jax.config.update("jax_enable_compilation_cache", True)
        print(f"{kind:5s} {dtype:9s} {side:9s} " + _describe(result[side], args.epochs), flush=True)
      ratios = _ratios(result)
      print(f"{kind:5s} {dtype:9s} ratios " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
      rows.append({"set": kind, "dtype": dtype, "sides": result, "ratios": ratios})
  payload = {"machine": info, "args": vars(args), "rows": rows}
  common.write_json(args.json, payload)
  return payload


def _describe(r: dict, epochs: int) -> str:
  """One side's result line: training and evaluation speed, and for our sides the buckets,
  compilations and step time by width."""
  return (
    f"train {r['train_ex_s']:8.2f} ex/s {r['train_s']:8.1f} s/{epochs} epoch(s)"
    + (
      f" (buckets {','.join(map(str, r['buckets']))}; "
      f"compile {r['compile_s']:.1f} s, {r['compiles']} programs; steps "
      f"{r['steps_s']:.1f} s; s/step by width "
      + ", ".join(f"{w}: {t:.3f}" for w, t in r["step_s_by_width"].items())
      + ")"
      if "compiles" in r
      else ""
    )
    + (" [extrapolated]" if r.get("extrapolated") else "")
    + f"   eval {r['eval_ex_s']:8.2f} ex/s"
  )


def _ratios(result: dict) -> dict[str, float]:
  """Our sides' speed over the padded and transformers' sides, training and evaluation."""
  ratios = {}
  for ours in ("bucketed", "powers", "finer", "rerun"):
    for other in ("padded", "torch"):
      if ours in result and other in result:
        ratios[f"train {ours}/{other}"] = result[other]["train_s"] / result[ours]["train_s"]
        ratios[f"eval {ours}/{other}"] = result[ours]["eval_ex_s"] / result[other]["eval_ex_s"]
  return ratios


if __name__ == "__main__":
  main()
