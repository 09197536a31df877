"""Compile time of one ALBERT training step against depth (scanned vs unrolled layers), and the
XLA temporary memory of the step with and without remat.

    python benchmarks/bench_compile.py                                  # base: H=768, 12/24/48
    python benchmarks/bench_compile.py --hidden 256 --heads 4 --intermediate 1024 --repeats 1
    python benchmarks/bench_compile.py --json compile.json

The step is `jax.value_and_grad` of the pretraining loss (MLM cross-entropy at P masked positions
+ SOP cross-entropy, albert_flax.train.losses) w.r.t. the parameters, jitted. For each
configuration a
fresh `jax.jit` is lowered and compiled against abstract arguments (nothing is allocated or run):
"lower", "compile" and "wall" (their sum) are wall seconds, "cpu" the process CPU seconds of
lower + compile (all threads), each the minimum over --repeats; "temp" is
`compiled.memory_analysis().temp_size_in_bytes`, the scratch memory XLA plans for the step
(activations kept for the backward pass included). "vs 12" divides the CPU seconds by those of the
first (12-layer) row with the same scan/remat setting (CPU time, because wall time on a shared
machine swings with other processes' load); the goal for the scanned model is <= 1.3 at 48.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def build_step(config):
  """(jitted step, abstract params, abstract batch) for one AlbertConfig."""
  import flax.linen as nn
  import jax

  import albert_flax as af
  from albert_flax.train import losses

  model = af.AlbertForPreTraining(config)

  def loss_fn(params, batch):
    out = model.apply(
      {"params": params},
      batch["input_ids"],
      attention_mask=batch["attention_mask"],
      token_type_ids=batch["token_type_ids"],
      masked_positions=batch["masked_lm_positions"],
    )
    stats = losses.pretraining_stats(out.prediction_logits, out.sop_logits, batch)
    return sum(losses.ratio(*stats[name]) for name in losses.PRETRAINING_LOSSES)

  def step(params, batch):
    return jax.value_and_grad(loss_fn)(params, batch)

  def init_params(rng, ids):
    return nn.meta.unbox(model.init(rng, ids)["params"])

  return step, init_params


def measure(config, batch, repeats: int) -> dict:
  import jax
  import numpy as np

  _, init_params = build_step(config)
  abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  ids = abstract_batch["input_ids"]
  params = jax.eval_shape(init_params, jax.random.key(0), ids)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  best = {"lower_s": float("inf"), "compile_s": float("inf"), "cpu_s": float("inf")}
  for _ in range(repeats):
    # A new step function each time: jax caches traces and executables per function, so
    # re-lowering the same one would measure a cache hit.
    step, _ = build_step(config)
    jitted = jax.jit(step)
    cpu_start, start = time.process_time(), time.perf_counter()
    lowered = jitted.lower(params, abstract_batch)
    middle = time.perf_counter()
    compiled = lowered.compile()
    end, cpu_end = time.perf_counter(), time.process_time()
    for key, value in (
      ("lower_s", middle - start),
      ("compile_s", end - middle),
      ("cpu_s", cpu_end - cpu_start),
    ):
      best[key] = min(best[key], value)
  memory = compiled.memory_analysis()
  temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None
  return {**best, "temp_bytes": temp, "params": n_params}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--layers", default="12,24,48")
  parser.add_argument("--hidden", type=int, default=768)
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--intermediate", type=int, default=3072)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument(
    "--remats", default="none,full,dots", help="remat policies measured on the scanned model"
  )
  parser.add_argument("--no-unrolled", action="store_true", help="skip scan_layers=False rows")
  parser.add_argument("--json", default=None)
  args = parser.parse_args(argv)

  import albert_flax as af

  info = common.machine_info()
  common.print_machine(info)
  layers = [int(x) for x in args.layers.split(",")]
  base = af.AlbertConfig.preset(
    "base-v2",
    hidden_size=args.hidden,
    num_attention_heads=args.heads,
    intermediate_size=args.intermediate,
  )
  batch = common.pretraining_batch(args.batch, args.seq, base.vocab_size)
  settings = [(True, remat) for remat in args.remats.split(",")]
  if not args.no_unrolled:
    settings.append((False, "none"))
  print(
    f"# step: value_and_grad(MLM + SOP loss), batch {args.batch} x seq {args.seq}, "
    f"H={args.hidden} A={args.heads} I={args.intermediate} E=128 V=30000; min of "
    f"{args.repeats} compile(s)"
  )
  header = (
    f"{'layers':>6} {'scan':>5} {'remat':>5} {'params':>11} {'lower s':>8} "
    f"{'compile s':>9} {'wall s':>7} {'cpu s':>7} {'vs ' + str(layers[0]):>6} "
    f"{'temp MiB':>9}"
  )
  print(header)
  print("-" * len(header))
  rows, first = [], {}
  for scan, remat in settings:
    for n in layers:
      config = base.replace(num_hidden_layers=n, scan_layers=scan, remat=remat)
      result = measure(config, batch, args.repeats)
      total = result["lower_s"] + result["compile_s"]
      first.setdefault((scan, remat), result["cpu_s"])
      result.update(
        layers=n,
        scan=scan,
        remat=remat,
        wall_s=total,
        vs_first=result["cpu_s"] / first[(scan, remat)],
      )
      rows.append(result)
      temp = "n/a" if result["temp_bytes"] is None else f"{result['temp_bytes'] / 2**20:9.1f}"
      print(
        f"{n:>6} {str(scan):>5} {remat:>5} {result['params']:>11,} "
        f"{result['lower_s']:>8.2f} {result['compile_s']:>9.2f} {total:>7.2f} "
        f"{result['cpu_s']:>7.2f} {result['vs_first']:>6.2f} {temp:>9}",
        flush=True,
      )
  common.write_json(args.json, {"machine": info, "args": vars(args), "rows": rows})


if __name__ == "__main__":
  main()
