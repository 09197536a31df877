"""Where the time of one training step goes: XLA CPU kernels grouped by what they compute.

Runs the benchmark step of benchmarks/impls.py (ours or transformers' Flax model under the same
step machinery, LAMB, MLM at the masked positions + SOP) under `jax.profiler.trace`, reads the
trace back with `jax.profiler.ProfileData`, and attributes every kernel event to the HLO
instruction it ran (by name, from the compiled module's text) and through that instruction's
`op_name` metadata to a part of the model:

    matmul fwd/bwd       dot fusions (XLA's CPU GEMM library calls) under jvp / transpose
    elementwise fwd/bwd  other fusions of the forward / backward pass
    copy fwd/bwd         copies, transposes, dynamic slices (the scan's stacked activations)
    optimizer/other      everything outside the differentiated function: LAMB, clipping

    python benchmarks/profile_step.py                                  # ours, base, float32
    python benchmarks/profile_step.py --side hf_flax --dtype bfloat16 --top 20

Kernel times can overlap on the two threads of the CPU client, so the grouped total may exceed
the step's wall time; the shares are what this is for.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%([\w.\-]+) = .*?\b([a-z][\w\-]*)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_FUSION_KIND = re.compile(r'"kind":"(\w+)"')


def instruction_table(hlo_text: str) -> dict[str, tuple[str, str]]:
  """{instruction name: (opcode[/fusion kind], op_name metadata)} of a compiled HLO module."""
  table = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    op_name = _OP_NAME.search(line)
    kind = _FUSION_KIND.search(line)
    table[match.group(1)] = (
      match.group(2) + ("/" + kind.group(1) if kind else ""),
      op_name.group(1) if op_name else "",
    )
  return table


def category(name: str, opcode: str, op_name: str) -> str:
  """The group of one kernel (see the module docstring); XLA names fusions by their ops."""
  if "jvp(" not in op_name and "transpose(" not in op_name:
    return "optimizer/other"
  direction = "bwd" if "transpose(" in op_name else "fwd"
  if "dot" in opcode or "ynn" in opcode or "dot_general" in op_name.rsplit("/", 1)[-1]:
    return f"matmul {direction}"
  if any(word in name or word in opcode for word in ("copy", "transpose", "dynamic", "slice")):
    return f"copy {direction}"
  return f"elementwise {direction}"


# Kernel kinds by what XLA names the kernel after (fusions are named by their ops, in order):
# the first word found decides. "convert" and "dynamic-update-slice" are what a mixed-precision
# step loses to dtype conversions and to stacking the scan's saved activations (issue 15).
KERNEL_KINDS = (
  ("dynamic-update-slice", "dynamic-update-slice"),
  ("convert", "convert"),
  ("gemm", "ynn"),
  ("gemm", "dot"),
  ("broadcast", "broadcast"),
  ("copy/transpose/slice", "copy"),
  ("copy/transpose/slice", "transpose"),
  ("copy/transpose/slice", "slice"),
)


def kernel_kind(name: str, opcode: str) -> str:
  """What one kernel is, by its name or opcode (KERNEL_KINDS), else "other"."""
  for kind, word in KERNEL_KINDS:
    if word in name or word in opcode:
      return kind
  return "other"


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--side", default="ours", choices=("ours", "hf_flax"))
  p.add_argument("--size", default="base-v2")
  p.add_argument("--layers", type=int, default=None)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--remat", default="none", help="ours only")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--predictions", type=int, default=20)
  p.add_argument("--top", type=int, default=15, help="kernels listed by time")
  return p.parse_args(argv)


def main(argv=None) -> dict[str, float]:
  args = parse_args(argv)
  import impls
  import jax

  import albert_flax as af

  common.print_machine(common.machine_info())
  overrides = {"dtype": args.dtype}
  if args.layers:
    overrides["num_hidden_layers"] = args.layers
  if args.side == "ours":
    overrides["remat"] = args.remat
  cfg = af.AlbertConfig.preset(args.size, **overrides)
  batch = common.pretraining_batch(args.batch, args.seq, cfg.vocab_size, args.predictions)
  side = impls.SIDES[args.side](cfg, batch)
  table = instruction_table(side.lower_train_step().compile().as_text())
  for _ in range(2):  # compile, then one warm step
    side.train_step()
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      start = time.perf_counter()
      side.train_step()
      wall = time.perf_counter() - start
    paths = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
      raise SystemExit(f"jax.profiler wrote no trace under {trace_dir}")
    profile = jax.profiler.ProfileData.from_file(paths[0])

  by_group: collections.Counter = collections.Counter()
  by_kernel: collections.Counter = collections.Counter()
  by_kind: collections.Counter = collections.Counter()
  for plane in profile.planes:
    for line in plane.lines:
      for event in line.events:
        if event.name not in table:  # runtime bookkeeping, Python, thread-pool events
          continue
        opcode, op_name = table[event.name]
        group = category(event.name, opcode, op_name)
        by_group[group] += event.duration_ns
        by_kind[kernel_kind(event.name, opcode)] += event.duration_ns
        by_kernel[(group, event.name, op_name[-80:])] += event.duration_ns
  total = sum(by_group.values())
  if not total:
    raise SystemExit("no kernel of the step was found in the trace")
  print(
    f"{args.side} {args.size} {args.dtype} remat={args.remat if args.side == 'ours' else '-'} "
    f"B={args.batch} S={args.seq}: step wall {wall * 1e3:.0f} ms, kernel time "
    f"{total / 1e6:.0f} ms"
  )
  for group, ns in by_group.most_common():
    print(f"  {group:18s} {ns / 1e6:8.0f} ms  {100 * ns / total:5.1f}%")
  print("by kernel kind:")
  for kind, ns in by_kind.most_common():
    print(f"  {kind:20s} {ns / 1e6:8.0f} ms  {100 * ns / total:5.1f}%")
  print(f"top {args.top} kernels:")
  for (group, name, op_name), ns in by_kernel.most_common(args.top):
    print(f"  {ns / 1e6:7.0f} ms  {group:17s} {name:24s} {op_name}")
  return {group: ns / total for group, ns in by_group.items()}


if __name__ == "__main__":
  main()
