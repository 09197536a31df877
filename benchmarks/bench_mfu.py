"""Model FLOPs utilization of our training step against the measured matmul peak of this machine.

    MFU = model FLOPs per step / step time / peak,   model FLOPs per token (common.py):
          6*L*(4H^2 + 2*H*I) + 12*L*S*H + 6*E*H + 6*(H*E + E*V)*P/S

The peak is measured, not taken from a data sheet: the best rate of a large square jnp.dot in the
same dtype (for bf16, the faster of a bf16 product and one with float32 accumulation), taken
before and after the model runs (the higher of the two). On a shared machine the same ratio is also
given
with CPU seconds on both sides (FLOP per CPU-second of the step / of the dot), which other
processes' load does not skew. The step is ours (benchmarks/impls.py OursJax:
albert_flax.train.training.make_train_step, LAMB, MLM on P gathered positions + SOP).

    python benchmarks/bench_mfu.py                       # CPU: base 8 x 128, float32 and bfloat16
    python benchmarks/bench_mfu.py --runs base-v2:8:128 --dtypes float32 --remat none,dots,full

With a GPU (jax.default_backend() == "gpu") the default runs are base, large and xxlarge at
sequence 512 in bfloat16, each with attention_implementation "xla" and "cudnn":

    python benchmarks/bench_mfu.py --gpu                 # or just run it on a GPU machine
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

CPU_RUNS = "base-v2:8:128"
GPU_RUNS = "base-v2:32:512,large-v2:16:512,xxlarge-v2:8:512"


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--gpu", action="store_true", help="the GPU set of runs (default when on a GPU)")
  p.add_argument("--runs", default=None, help="comma list of preset:batch:seq")
  p.add_argument("--dtypes", default=None, help="default float32,bfloat16 (CPU), bfloat16 (GPU)")
  p.add_argument(
    "--attention",
    default=None,
    help="attention_implementation values; default auto (CPU), xla,cudnn (GPU)",
  )
  p.add_argument("--remat", default="dots", help="comma list of remat policies")
  p.add_argument("--predictions", type=int, default=20)
  p.add_argument("--steps", type=int, default=5, help="timed steps per run (median)")
  p.add_argument("--peak-size", type=int, default=None, help="side of the square matmul")
  p.add_argument("--json", default=None)
  return p.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  import jax

  import albert_flax as af

  on_gpu = args.gpu or jax.default_backend() == "gpu"
  if args.gpu and jax.default_backend() != "gpu":
    raise SystemExit(f"--gpu given but JAX's backend is {jax.default_backend()!r}")
  runs = (args.runs or (GPU_RUNS if on_gpu else CPU_RUNS)).split(",")
  dtypes = (args.dtypes or ("bfloat16" if on_gpu else "float32,bfloat16")).split(",")
  attentions = (args.attention or ("xla,cudnn" if on_gpu else "auto")).split(",")
  remats = args.remat.split(",")
  peak_n = args.peak_size or (8192 if on_gpu else 2048)

  info = common.machine_info()
  common.print_machine(info)
  peaks, cpu_peaks = {}, {}
  for d in dtypes:
    peaks[d], cpu_peaks[d] = common.matmul_peak(d, peak_n)
    print(
      f"# matmul peak {d} ({peak_n}^3 jnp.dot): {peaks[d] / 1e9:.1f} GFLOP/s"
      f" ({cpu_peaks[d] / 1e9:.1f} GFLOP per CPU-second)"
    )
  rows = []
  for run in runs:
    try:
      size, batch_size, seq = run.split(":")
      batch_size, seq = int(batch_size), int(seq)
    except ValueError:
      raise SystemExit(f"--runs entries are preset:batch:seq, got {run!r}") from None
    for dtype in dtypes:
      for attention in attentions:
        for remat in remats:
          cfg = af.AlbertConfig.preset(
            size, dtype=dtype, attention_implementation=attention, remat=remat
          )
          key = dict(
            size=size, batch=batch_size, seq=seq, dtype=dtype, attention=attention, remat=remat
          )
          row = _measure(cfg, key, args, peaks[dtype], cpu_peaks[dtype])
          rows.append(row)
          print(
            f"{size:10s} B={batch_size:<3d} S={seq:<4d} {dtype:8s} attn={attention:5s} "
            f"remat={remat:5s} step {common.Spread(**row['step_s']).fmt(3)} s  "
            f"{row['tokens_per_s']:8.0f} tok/s  "
            f"{row['achieved_gflops']:8.1f} GFLOP/s  MFU {row['mfu']:.3f} "
            f"(by CPU time {row['mfu_by_cpu_time']:.3f})  "
            f"load {row['load']:.1f}",
            flush=True,
          )
  _rescale_to_peaks_measured_again(rows, dtypes, peak_n, peaks, cpu_peaks)
  for row in rows:
    print(
      f"MFU {row['size']} {row['dtype']} attn={row['attention']} remat={row['remat']}: "
      f"{row['mfu']:.3f} of the measured {row['dtype']} peak {row['peak_gflops']:.1f} GFLOP/s; "
      f"by CPU time {row['mfu_by_cpu_time']:.3f}"
    )
  out = {
    "machine": info,
    "args": vars(args),
    "peaks_gflops": {d: p / 1e9 for d, p in peaks.items()},
    "peaks_gflop_per_cpu_s": {d: p / 1e9 for d, p in cpu_peaks.items()},
    "rows": rows,
  }
  common.write_json(args.json, out)
  return out


def _measure(cfg, key: dict, args, peak: float, cpu_peak: float) -> dict:
  """One configuration's train step (`key`: size, batch, seq, dtype, attention, remat), timed
  `args.steps` times after two untimed calls, and its model FLOPs against the matmul peaks."""
  import impls

  batch_size, seq = key["batch"], key["seq"]

  batch = common.pretraining_batch(batch_size, seq, cfg.vocab_size, args.predictions)
  side = impls.OursJax(cfg, batch)
  side.train_step()  # compile
  side.train_step()
  times, cpu_times = [], []
  for _ in range(args.steps):
    wall, cpu = common.time_call(side.train_step)
    times.append(wall)
    cpu_times.append(cpu)
  del side
  step_s = common.Spread.of(times)
  step_cpu_s = common.Spread.of(cpu_times)
  flops = (
    common.model_flops_per_token(
      cfg.num_hidden_layers,
      cfg.hidden_size,
      cfg.intermediate_size,
      seq,
      cfg.embedding_size,
      cfg.vocab_size,
      args.predictions,
    )
    * batch_size
    * seq
  )
  return {
    **key,
    "step_s": step_s.__dict__,
    "model_tflop_per_step": flops / 1e12,
    "achieved_gflops": flops / step_s.median / 1e9,
    "peak_gflops": peak / 1e9,
    "mfu": flops / step_s.median / peak,
    "step_cpu_s": step_cpu_s.__dict__,
    # The same ratio with CPU seconds on both sides: robust to other processes.
    "mfu_by_cpu_time": flops / step_cpu_s.median / cpu_peak,
    "tokens_per_s": batch_size * seq / step_s.median,
    "load": common.load_average()[0],
  }


def _rescale_to_peaks_measured_again(rows, dtypes, peak_n, peaks, cpu_peaks) -> None:
  """The peaks again: a machine that got quieter since the start must not inflate the MFU."""
  for d in dtypes:
    again, again_cpu = common.matmul_peak(d, peak_n)
    for name, table, value, key in (
      ("wall", peaks, again, "mfu"),
      ("CPU-time", cpu_peaks, again_cpu, "mfu_by_cpu_time"),
    ):
      if value > table[d]:
        print(f"# {d} {name} peak measured again higher: {value / 1e9:.1f} GFLOP/s; MFU rescaled")
        for row in rows:
          if row["dtype"] == d:
            row[key] *= table[d] / value
            if key == "mfu":
              row["peak_gflops"] = value / 1e9
        table[d] = value


if __name__ == "__main__":
  main()
