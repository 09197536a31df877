"""Compile time and XLA temp memory of the training step as depth grows: ours (the shared layer
under nn.scan, with and without remat) against transformers' Flax ALBERT (a Python loop over the
layers, unrolled into the program).

Only shapes are used (no parameters are initialized, nothing runs): each configuration's train
step (benchmarks/impls.py: our make_train_step, LAMB, MLM on P gathered positions + SOP) is
lowered and compiled from a fresh jit, so no cache is hit, and
`compiled.memory_analysis().temp_size_in_bytes` is read. Writes a PNG of both against depth.

    python benchmarks/bench_depth.py                                  # base dims, 12..96 layers
    python benchmarks/bench_depth.py --depths 12,48 --variants ours,hf_flax --png ''
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# name -> (side, AlbertConfig overrides)
VARIANTS = {
  "ours": ("ours", {"remat": "none"}),
  "ours_remat": ("ours", {"remat": "full"}),
  "ours_remat_dots": ("ours", {"remat": "dots"}),
  "hf_flax": ("hf_flax", {}),
}
LABELS = {
  "ours": "ours: scan, no remat",
  "ours_remat": "ours: scan + remat (full)",
  "ours_remat_dots": "ours: scan + remat (save dots)",
  "hf_flax": "transformers Flax: unrolled",
}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--size", default="base-v2")
  p.add_argument("--dtype", default="float32")
  p.add_argument("--depths", default="12,24,48,96")
  p.add_argument(
    "--variants", default="ours,ours_remat,hf_flax", help=f"comma list of {sorted(VARIANTS)}"
  )
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--predictions", type=int, default=20)
  p.add_argument("--png", default=os.path.join(HERE, "depth.png"), help="'' to skip the plot")
  p.add_argument("--json", default=None)
  args = p.parse_args(argv)
  args.depths = [int(d) for d in args.depths.split(",")]
  args.variants = args.variants.split(",")
  bad = [v for v in args.variants if v not in VARIANTS]
  if bad:
    raise SystemExit(f"unknown variants {bad}; choose from {sorted(VARIANTS)}")
  return args


def measure(variant: str, cfg, batch) -> dict:
  """Trace + lower and compile one fresh train step; its temp memory."""
  import impls

  side_name, overrides = VARIANTS[variant]
  side = impls.SIDES[side_name](cfg.replace(**overrides), batch, abstract=True)
  start = time.perf_counter()
  lowered = side.lower_train_step()
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  done = time.perf_counter()
  mem = compiled.memory_analysis()
  return {
    "lower_s": lowered_at - start,
    "compile_s": done - lowered_at,
    "total_s": done - start,
    "temp_bytes": int(mem.temp_size_in_bytes),
    "argument_bytes": int(mem.argument_size_in_bytes),
    "load": common.load_average()[0],
  }


def plot(rows: list[dict], variants: list[str], path: str, title: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
  for v in variants:
    pts = sorted((r["layers"], r) for r in rows if r["variant"] == v)
    xs = [x for x, _ in pts]
    ax_t.plot(xs, [r["total_s"] for _, r in pts], marker="o", label=LABELS[v])
    ax_m.plot(xs, [r["temp_bytes"] / 2**20 for _, r in pts], marker="o", label=LABELS[v])
  for ax, ylabel in (
    (ax_t, "trace + compile of the train step [s]"),
    (ax_m, "XLA temp memory [MiB]"),
  ):
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({r["layers"] for r in rows}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("num_hidden_layers")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  ax_m.set_yscale("log")
  ax_t.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  print(f"# wrote {path}")


def main(argv=None) -> dict:
  args = parse_args(argv)
  import impls

  import albert_flax as af

  if "hf_flax" in args.variants:  # transformers v5+ has no Flax models: rerun with 4.x in a venv
    impls.run_with_transformers_flax(
      os.path.abspath(__file__), sys.argv[1:] if argv is None else list(argv)
    )

  info = common.machine_info()
  common.print_machine(info)
  rows = []
  batch = common.pretraining_batch(args.batch, args.seq, 30000, args.predictions)
  # The first compile of a process also pays one-time costs (JAX's tracing caches, XLA's
  # start-up): a discarded warm-up compile of each variant keeps them out of the first row.
  warm = af.AlbertConfig.preset(args.size, dtype=args.dtype, num_hidden_layers=2)
  for variant in args.variants:
    measure(variant, warm, batch)
  print(
    f"{'variant':18s} {'layers':>6s} {'lower s':>8s} {'compile s':>9s} {'total s':>8s} "
    f"{'temp MiB':>9s}  load"
  )
  for depth in args.depths:
    cfg = af.AlbertConfig.preset(args.size, dtype=args.dtype, num_hidden_layers=depth)
    for variant in args.variants:
      r = measure(variant, cfg, batch)
      r.update(variant=variant, layers=depth)
      rows.append(r)
      print(
        f"{variant:18s} {depth:6d} {r['lower_s']:8.1f} {r['compile_s']:9.1f} "
        f"{r['total_s']:8.1f} {r['temp_bytes'] / 2**20:9.1f}  {r['load']:.1f}",
        flush=True,
      )
      gc.collect()
  by = {(r["variant"], r["layers"]): r for r in rows}
  lo, hi = min(args.depths), max(args.depths)
  summary = {}
  for v in args.variants:
    summary[f"{v}: compile {hi}/{lo}"] = by[(v, hi)]["total_s"] / by[(v, lo)]["total_s"]
  if "hf_flax" in args.variants:
    for v in args.variants:
      if v == "hf_flax":
        continue
      for d in args.depths:
        summary[f"{v}/hf_flax compile at {d}"] = (
          by[(v, d)]["total_s"] / by[("hf_flax", d)]["total_s"]
        )
        summary[f"{v}/hf_flax temp at {d}"] = (
          by[(v, d)]["temp_bytes"] / by[("hf_flax", d)]["temp_bytes"]
        )
  for k, val in summary.items():
    print(f"  {k:40s} {val:.3f}")
  if args.png:
    plot(
      rows,
      args.variants,
      args.png,
      f"ALBERT {args.size} train step ({args.dtype}, batch {args.batch} x {args.seq}), "
      f"{info['cpu']}, {info['date'][:10]}",
    )
  out = {"machine": info, "args": vars(args), "rows": rows, "summary": summary}
  common.write_json(args.json, out)
  return out


if __name__ == "__main__":
  main()
