"""Inference: ALBERT-base sequence classification, our JAX model (float32, bfloat16, int8), our
ONNX export on onnxruntime (float32, int8) and transformers' PyTorch model (eager and SDPA
attention), interleaved in one run.

Each side classifies the same random batch (B x S token ids, the last quarter of row 0 padded)
with random weights (speed does not depend on them); the sides take turns repeat by repeat
(benchmarks/common.interleave), so a burst of load from other processes hits them evenly and the
per-repeat ratios stay fair on a shared machine. Reported: latency per batch (median [min, max]
over repeats), tokens/s, and each side's speed over transformers' best PyTorch side.

    python benchmarks/bench_inference.py                        # base, B = 1 and 32, S = 128
    python benchmarks/bench_inference.py --batch-sizes 1 --repeats 5 --json out.json
    python benchmarks/bench_inference.py --size tiny --sides jax_f32,onnx_f32,torch_sdpa

Also prints the artifact sizes: the float32 and int8 ONNX files against 4 bytes x parameters.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SIDES = ("jax_f32", "jax_bf16", "jax_int8", "onnx_f32", "onnx_int8", "torch_eager", "torch_sdpa")


def make_batch(batch_size: int, seq: int, vocab: int) -> tuple[np.ndarray, ...]:
  rng = np.random.default_rng(0)
  ids = rng.integers(5, vocab, (batch_size, seq)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[0, seq - seq // 4 :] = 0
  return ids, mask, np.zeros_like(ids)


def jax_sides(cfg, wanted, workdir):
  """name -> (model, params) for our JAX sides, and the ONNX paths of the export sides."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  import albert_flax as af

  model = af.AlbertForSequenceClassification(cfg)
  params = nn.meta.unbox(
    jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 8), jnp.int32))["params"]
  )
  sides, onnx_paths = {}, {}
  if "jax_f32" in wanted or "onnx_f32" in wanted:
    sides["jax_f32"] = (model, params)
  if "jax_bf16" in wanted:
    sides["jax_bf16"] = (af.AlbertForSequenceClassification(cfg.replace(dtype="bfloat16")), params)
  if {"jax_int8", "onnx_int8"} & set(wanted):
    sides["jax_int8"] = af.quantize(model, params)
  for name, key in (("onnx_f32", "jax_f32"), ("onnx_int8", "jax_int8")):
    if name in wanted:
      onnx_paths[name] = af.export(*sides[key], os.path.join(workdir, name), format="onnx")
  n_params = sum(x.size for x in jax.tree.leaves(params))
  return sides, onnx_paths, n_params


def runners(cfg, wanted, batch, sides, onnx_paths):
  import jax

  out = {}
  for name in wanted:
    if name.startswith("jax_"):
      model, params = sides[name]
      fn = jax.jit(lambda p, i, m, t, model=model: model.apply({"params": p}, i, m, t).logits)
      out[name] = lambda fn=fn, params=params: jax.block_until_ready(fn(params, *batch))
    elif name.startswith("onnx_"):
      import onnxruntime

      options = onnxruntime.SessionOptions()
      options.log_severity_level = 3
      session = onnxruntime.InferenceSession(onnx_paths[name], options)
      feed = dict(zip(("input_ids", "attention_mask", "token_type_ids"), batch, strict=True))
      out[name] = lambda s=session, f=feed: s.run(None, f)
    else:
      out[name] = torch_runner(cfg, name.split("_")[1], batch)
  return out


def torch_runner(cfg, attention: str, batch):
  import torch
  import transformers
  from impls import hf_config_dict

  hf_cfg = transformers.AlbertConfig(**hf_config_dict(cfg), num_labels=cfg.num_labels)
  torch.manual_seed(0)
  model = transformers.AlbertForSequenceClassification._from_config(
    hf_cfg, attn_implementation=attention
  ).eval()
  tensors = [torch.from_numpy(x.astype(np.int64)) for x in batch]

  def run():
    with torch.inference_mode():
      return model(input_ids=tensors[0], attention_mask=tensors[1], token_type_ids=tensors[2])

  return run


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="base-v2", help="AlbertConfig preset")
  p.add_argument("--batch-sizes", default="1,32")
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--sides", default=",".join(SIDES))
  p.add_argument("--json", default=None, help="write the figures here")
  args = p.parse_args()
  wanted = [s for s in args.sides.split(",") if s]
  unknown = set(wanted) - set(SIDES)
  if unknown:
    p.error(f"unknown sides {sorted(unknown)}; choose from {list(SIDES)}")

  import albert_flax as af

  cfg = af.AlbertConfig.preset(args.size).replace(num_labels=2)
  info = common.machine_info()
  common.print_machine(info)
  results = {"machine": info, "size": args.size, "seq": args.seq, "runs": {}}
  with tempfile.TemporaryDirectory() as workdir:
    sides, onnx_paths, n_params = jax_sides(cfg, wanted, workdir)
    sizes = {n: os.path.getsize(p) for n, p in onnx_paths.items()}
    if sizes:
      print(f"# ONNX files (bytes), 4 x {n_params} parameters = {4 * n_params}: {sizes}")
      results["onnx_bytes"], results["float32_param_bytes"] = sizes, 4 * n_params
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
      batch = make_batch(batch_size, args.seq, cfg.vocab_size)
      fns = runners(cfg, wanted, batch, sides, onnx_paths)
      print(f"# batch {batch_size} x {args.seq}", flush=True)
      timings = common.interleave(fns, args.repeats)
      torch_sides = [n for n in wanted if n.startswith("torch_")]
      best_torch = (
        min(torch_sides, key=lambda n: np.median(timings.wall[n])) if torch_sides else None
      )
      run = {}
      for name in wanted:
        wall = common.Spread.of(timings.wall[name])
        row = {
          "latency_ms": [wall.median * 1e3, wall.low * 1e3, wall.high * 1e3],
          "tokens_per_s": batch_size * args.seq / wall.median,
        }
        line = (
          f"{name:12s} {wall.median * 1e3:9.1f} ms [{wall.low * 1e3:.1f}, {wall.high * 1e3:.1f}]"
        )
        line += f"  {row['tokens_per_s']:9.0f} tok/s"
        if best_torch:
          ratio = common.paired_ratios(timings.wall[name], timings.wall[best_torch])
          row["vs_best_torch"] = [ratio.median, ratio.low, ratio.high]
          line += f"  x{ratio.fmt()} vs {best_torch}"
          # By this process's CPU time: threads spinning on a loaded machine count here too.
          cpu = common.paired_ratios(timings.cpu[name], timings.cpu[best_torch])
          row["vs_best_torch_cpu_time"] = [cpu.median, cpu.low, cpu.high]
          line += f" (CPU time x{cpu.fmt()})"
        run[name] = row
        print(line, flush=True)
      results["runs"][str(batch_size)] = {"timings": run, "load": timings.load}
  print(f"# load after: {common.load_average()}")
  common.write_json(args.json, results)


if __name__ == "__main__":
  main()
