"""Training throughput and MFU of the pretraining step; the effect of remat on memory and speed.

    python benchmarks/bench_train_step.py                       # tiny and base, length 128
    python benchmarks/bench_train_step.py --models=tiny --dtypes=float32 --remat=none,full

For each (model, dtype, remat): the full jitted train step of the pretraining program (MLM at the
masked positions + SOP, LAMB, clipping) on synthetic batches; examples/s over `--steps` timed
steps after one warm-up step; MFU = model FLOPs per second / the measured matmul peak of this
machine in the same dtype (a large jnp.dot, timed). Model FLOPs count the matmuls of forward and
backward (3x forward) without remat's recomputation (XLA's cost analysis is not used: it counts
a scanned layer once, not L times). Memory: XLA's temp bytes of the compiled step.
"""

from __future__ import annotations

import argparse
import time

import common  # benchmarks/common.py (this script's directory is on sys.path)
import jax
import jax.numpy as jnp

import albert_flax as af
from albert_flax import sharding
from albert_flax.train import losses, optim, training


def bench(
  preset: str, dtype: str, remat: str, batch: int, seq: int, predictions: int, steps: int
) -> dict:
  vocab = 8000 if preset == "tiny" else 30000
  cfg = af.AlbertConfig.preset(preset, vocab_size=vocab, dtype=dtype, remat=remat)
  model = af.AlbertForPreTraining(cfg)
  mesh = sharding.make_mesh(-1, 1, 1)
  tx, schedule = optim.create_optimizer("lamb", 1e-3, 1000, 10)

  def init_params(rng):
    return model.init(
      rng, jnp.zeros((1, seq), jnp.int32), masked_positions=jnp.zeros((1, predictions), jnp.int32)
    )["params"]

  state, shardings = training.init_train_state(init_params, tx, mesh, jax.random.key(0))
  step = training.make_train_step(
    losses.pretraining_stats_fn(model),
    losses.pretraining_loss_weights,
    tx,
    shardings,
    mesh,
    learning_rate_fn=schedule,
  )
  batches = [
    sharding.global_batch(
      common.pretraining_batch(batch, seq, vocab, predictions, seed=k), mesh, batch
    )
    for k in range(2)
  ]
  start = time.perf_counter()
  compiled = step.lower(state, batches[0]).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  state, metrics = step(state, batches[0])  # warm-up
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for k in range(steps):
    state, metrics = step(state, batches[k % 2])
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / steps
  return dict(
    model=preset,
    dtype=dtype,
    remat=remat,
    batch=batch,
    step_s=seconds,
    examples_per_s=batch / seconds,
    compile_s=compile_s,
    model_flops=common.model_flops_per_token(
      cfg.num_hidden_layers,
      cfg.hidden_size,
      cfg.intermediate_size,
      seq,
      cfg.embedding_size,
      vocab,
      predictions,
    )
    * seq
    * batch,
    temp_mib=memory.temp_size_in_bytes / 2**20 if memory else float("nan"),
    loss=float(metrics["loss"]),
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="tiny,base-v2")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--remat", default="none,full", help="remat policies to compare")
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--predictions", type=int, default=20)
  parser.add_argument(
    "--batch", default="tiny=64,base-v2=8", help="batch size per model, e.g. tiny=64,base-v2=8"
  )
  parser.add_argument("--steps", type=int, default=3)
  args = parser.parse_args()
  batches = dict(kv.split("=") for kv in args.batch.split(","))
  dtypes = args.dtypes.split(",")

  print(f"devices: {jax.devices()}")
  peaks = {d: common.matmul_peak(d, 2048)[0] for d in dtypes}
  for d, p in peaks.items():
    print(f"matmul peak {d}: {p / 1e9:.1f} GFLOP/s (2048^3 jnp.dot)")
  header = (
    f"{'model':8} {'dtype':9} {'remat':5} {'batch':>5} {'step s':>8} {'ex/s':>8} "
    f"{'MFU %':>6} {'GFLOP/step':>10} {'temp MiB':>9} {'compile s':>9}"
  )
  print(header)
  for preset in args.models.split(","):
    for dtype in dtypes:
      for remat in args.remat.split(","):
        r = bench(
          preset, dtype, remat, int(batches.get(preset, 8)), args.seq, args.predictions, args.steps
        )
        mfu = 100 * r["model_flops"] / r["step_s"] / peaks[dtype]
        print(
          f"{r['model']:8} {r['dtype']:9} {r['remat']:5} {r['batch']:5d} {r['step_s']:8.3f} "
          f"{r['examples_per_s']:8.1f} {mfu:6.1f} {r['model_flops'] / 1e9:10.1f} "
          f"{r['temp_mib']:9.1f} {r['compile_s']:9.1f}",
          flush=True,
        )


if __name__ == "__main__":
  main()
