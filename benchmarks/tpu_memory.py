"""Memory per chip of the shipped pretraining configs on the TPU slices people rent, from the TPU
compiler itself (compile-only: libtpu on this CPU machine, no TPU; see docs/tpu.md).

    python benchmarks/tpu_memory.py --rows=base:512:v4-64,xxlarge:512:v4-512 [--search]
        [--max-batch] [--json=out.json] [--embedding-rule=fsdp] [--batch=N] [--mesh=D,F,T]
        [--model=embedding_size=768,cross_layer_sharing=none]

A row is SIZE:SEQ:SLICE (SIZE = a pretrain/configs/ file: base, large, xlarge, xxlarge), at the
paper's batch 4096 with 20 predictions. Each row compiles the config's train step as shipped and
prints: fits or not, GiB per chip (the compiler's arguments + temporaries + outputs), the
collectives per step, and examples/s at 50% of the chip's peak bf16 FLOP/s (analytic FLOPs).
--search: the least recomputation that fits: the remat policies from least to most recomputation
(then larger fsdp axes), each compiled, until one fits. --max-batch: the largest global batch
(powers of two) that fits without accumulation, reported per chip.
--embedding-rule=fsdp measures the old sharding rule (the word table's E split over fsdp) for a
before/after comparison of the collectives. --model sets AlbertConfig fields as
`--config.model_overrides.KEY=VALUE` does (e.g. the paper's not-shared E=768 baseline, BERT-base's
shape); each row reports the model's parameter count.

Each compile of a big preset takes tens of seconds to minutes on a small machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (benchmarks/common.py)
import ml_collections  # noqa: E402

from albert_flax import paper, sharding  # noqa: E402
from albert_flax.train import aot, training  # noqa: E402
from pretrain import steps  # noqa: E402

REMAT_BY_RECOMPUTE = ("none", "dots_with_no_batch_dims", "dots", "full")


def _use_embedding_rule(mesh_axis: str | None) -> None:
  """Swap the rule of "embedding" in every default that holds the rules table (benchmark only)."""
  old = sharding.LOGICAL_RULES
  new = tuple((k, mesh_axis if k == "embedding" else v) for k, v in old)
  for module in (sharding, training):
    for fn in vars(module).values():
      if callable(fn) and getattr(fn, "__defaults__", None):
        fn.__defaults__ = tuple(new if d is old else d for d in fn.__defaults__)
  sharding.LOGICAL_RULES = new


def config_for(size: str, seq: int, batch: int = 4096):
  config = importlib.import_module(f"pretrain.configs.{size}").get_config()
  config.max_seq_length, config.batch_size = seq, batch
  return config


def set_model_overrides(config, overrides: str) -> None:
  """'KEY=VALUE,...' -> config.model_overrides (integers where the field is one)."""
  for item in overrides.split(","):
    key, _, value = item.partition("=")
    if key not in config.model_overrides:
      raise SystemExit(f"--model: AlbertConfig has no overridable field {key!r}")
    config.model_overrides[key] = int(value) if value.lstrip("-").isdigit() else value


def compile_row(config, topology: aot.Topology) -> dict:
  model_config = steps.model_for_shapes(config).config
  parameters = paper.backbone_parameter_count(model_config)
  start, cpu_start = time.perf_counter(), time.process_time()
  report, _ = aot.compile_for_topology(config, steps.compile_program, topology, train_only=True)
  report["wall_seconds"] = round(time.perf_counter() - start, 1)
  # CPU seconds of this process (all threads): what the compile costs, whatever the load.
  report["cpu_seconds"] = round(time.process_time() - cpu_start, 1)
  report["remat"] = config.remat
  report["backbone_parameters"] = parameters  # AlbertModel's, the paper's convention
  report["cross_layer_sharing"] = model_config.cross_layer_sharing
  report["embedding_size"] = model_config.embedding_size
  report["load_average"] = common.load_average()  # the machine may be shared: say how busy
  return report


def _search(entry: dict, shipped, topology: aot.Topology, report: dict, save) -> None:
  """entry["fits_with"]: the least recomputation that fits. The remat policies from least to
  most recomputation (those below the shipped one first, then, when the shipped one does not fit,
  those above it), then larger fsdp axes under remat "full"; each one compiled."""
  config = ml_collections.ConfigDict(shipped.to_dict())

  def fits(label: str) -> bool:  # compile `config` as it is now, record it, say if it fits
    found = compile_row(config, topology)
    print(f"  {label}: {_summary(found)}", flush=True)
    entry.setdefault("tried", []).append(found)
    save()
    if found["fits"]:
      entry["fits_with"] = found
    return found["fits"]

  order = list(REMAT_BY_RECOMPUTE)
  for remat in order:
    if remat == shipped.remat:
      if report["fits"]:
        entry["fits_with"] = report
        return
      continue
    if order.index(remat) < order.index(shipped.remat) or not report["fits"]:
      config.remat = remat
      if fits(f"remat {remat}"):
        return
  config.remat = "full"
  while config.mesh.fsdp * config.mesh.tensor * 2 <= report["num_devices"]:
    config.mesh.fsdp, config.mesh.data = config.mesh.fsdp * 2, -1
    if fits(f"fsdp {config.mesh.fsdp}"):
      return


def _summary(report: dict) -> str:
  b = report["per_device_bytes"]
  gib = (b["total"] or 0) / aot.GiB
  mesh = "x".join(str(v) for v in report["mesh"].values())
  coll = ", ".join(f"{k} {v['count']}" for k, v in report["collectives"].items())
  return (
    f"{report['backbone_parameters'] / 1e6:.1f}M parameters "
    f"({report['cross_layer_sharing']}, E={report['embedding_size']}), "
    f"{'fits' if report['fits'] else 'NO'} {gib:.1f} GiB, mesh {mesh}, remat {report['remat']}, "
    f"{report['examples_per_second_at_50pct']:.0f} ex/s at 50%, collectives: {coll or '-'}, "
    f"compile {report['compile_seconds'].get('train_step', 0)} s ({report['cpu_seconds']} CPU s), "
    f"{sum('rematerialization' in w for w in report['warnings'])} remat warnings"
  )


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--rows", required=True, help="SIZE:SEQ:SLICE,... e.g. base:512:v4-64")
  p.add_argument("--search", action="store_true")
  p.add_argument("--max-batch", action="store_true")
  p.add_argument("--embedding-rule", default=None, choices=["fsdp"])
  p.add_argument("--batch", type=int, default=4096, help="global batch (default: the paper's)")
  p.add_argument("--mesh", default=None, help="DATA,FSDP,TENSOR instead of the config's")
  p.add_argument(
    "--remat", default=None, choices=REMAT_BY_RECOMPUTE, help="instead of the config's"
  )
  p.add_argument("--model", default=None, help="KEY=VALUE,... AlbertConfig fields")
  p.add_argument("--json", default=None)
  args = p.parse_args()
  if args.embedding_rule:
    _use_embedding_rule(args.embedding_rule)
  print(f"# cpu={common.cpu_model()} load={common.load_average()}")
  rows = []

  def save() -> None:  # after every compile: a long run killed midway keeps what it measured
    machine = common.machine_info()
    machine["versions"]["libtpu"] = common._version("libtpu")
    common.write_json(args.json, {"machine": machine, "rows": rows})

  for row in args.rows.split(","):
    size, seq, name = row.split(":")
    topology = aot.parse_topology(name)
    config = config_for(size, int(seq), args.batch)
    if args.model:
      set_model_overrides(config, args.model)
    if args.remat:
      config.remat = args.remat
    if args.mesh:
      config.mesh.data, config.mesh.fsdp, config.mesh.tensor = map(int, args.mesh.split(","))
    report = compile_row(config, topology)
    print(f"{size} S={seq} {name} ({topology.name}) shipped: {_summary(report)}", flush=True)
    entry = {"row": row, "shipped": report}
    rows.append(entry)
    save()
    if args.search:
      _search(entry, config, topology, report, save)
    if args.max_batch:
      # From the shipped settings, or those --search found to fit.
      if not report["fits"] and entry.get("fits_with"):
        config.remat = entry["fits_with"]["remat"]
        mesh = entry["fits_with"]["mesh"]
        config.mesh.data, config.mesh.fsdp, config.mesh.tensor = (
          mesh["data"],
          mesh["fsdp"],
          mesh["tensor"],
        )
      best = config.batch_size if report["fits"] or entry.get("fits_with") else None
      batch = config.batch_size * 2
      while best is not None:
        trial = config_for(size, int(seq), batch)
        trial.remat, trial.mesh = config.remat, config.mesh
        trial.model_overrides = config.model_overrides
        found = compile_row(trial, topology)
        print(f"  batch {batch}: {_summary(found)}", flush=True)
        entry.setdefault("batches", []).append(found)
        save()
        if not found["fits"]:
          break
        best, batch = batch, batch * 2
      entry["max_batch_per_chip"] = None if best is None else best // report["num_devices"]
      print(f"  largest batch per chip without accumulation: {entry['max_batch_per_chip']}")
      save()


if __name__ == "__main__":
  main()
