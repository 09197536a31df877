"""Compile-only mode: run the TPU compiler on a program's exact steps for any slice, without one.

    python -m pretrain --config=pretrain/configs/xxlarge.py --compile_only --topology=v4-512 \
        [--num_slices=2] [--report=report.json] [--suggest]

With libtpu installed (`pip install "jax[tpu]"`), `jax.experimental.topologies` describes the
devices of any TPU slice, and `jit(step).lower(abstract args).compile()` runs TPU XLA ahead of
time on a CPU machine (as MaxText's train_compile.py does). A program hands `compile_only` a
function that builds its steps over given devices (`Program`); this module parses the slice
name, compiles, and reports per-chip memory (the compiler's figures), whether it fits, the
collectives in the compiled HLO, the compiler's warnings, and the step time the analytic model
FLOPs imply at the chip's peak. Nothing is initialised and no data is read: the arguments are
`jax.ShapeDtypeStruct`s carrying their shardings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from albert_flax.train import compiled_steps
from albert_flax.train.compiler_output import (
  LibtpuLog,
  captured_stderr,
  collectives_per_step,
  compiler_warnings,
  out_of_memory_figures,
)

# Slices by name live in their own module; re-exported here, the compile-only mode's home.
from albert_flax.train.tpu_topologies import (  # noqa: F401
  CHIPS,
  Chip,
  GiB,
  Topology,
  parse_topology,
)

# ========================================================================== what is compiled


@dataclasses.dataclass
class CompileJob:
  """One jitted step and its abstract arguments (ShapeDtypeStructs carrying shardings)."""

  name: str
  step: Any  # albert_flax.train.training.MeshFunction
  args: tuple


@dataclasses.dataclass
class Program:
  """What a program builds over a slice's devices: the mesh, its steps and the figures the
  report derives throughput from. `jobs[0]` is the train step."""

  mesh: Mesh
  jobs: list[CompileJob]
  batch_size: int
  model_flops_per_step: float
  # Config keys (dotted; a group's name covers it) the steps never read: a saved compiled step
  # (--save_compiled) still serves a run that changes them (see compiled_steps).
  keys_not_in_steps: tuple[str, ...] = ()


BuildFn = Callable[[ml_collections.ConfigDict, Sequence[jax.Device]], Program]


def sharded_bytes(abstract_args: Any) -> int:
  """Bytes one device holds of these (sharded) arguments: each shard's size, from the sharding,
  summed over leaves (no padding). The largest shard counts where shards differ."""
  total = 0
  for leaf in jax.tree.leaves(abstract_args):
    shard = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
  return total


# ========================================================================== compiling


@dataclasses.dataclass
class StepCompile:
  """The outcome of compiling one step for one slice."""

  name: str
  seconds: float
  fits: bool
  per_device_bytes: dict[str, int | None]
  collectives: dict[str, dict[str, int]]
  warnings: list[str]
  error: str = ""  # the compiler's one-line figures when it does not fit
  compiled: Any = None


def compile_job(job: CompileJob, hbm_bytes: int) -> StepCompile:
  """AOT-compile one step; an out-of-memory refusal is a result (fits=False), not an error."""
  start = time.perf_counter()
  arguments = sharded_bytes(job.args)
  libtpu_log = LibtpuLog()
  with captured_stderr() as log_lines:
    try:
      compiled = job.step.lower(*job.args).compile()
      error = None
    except jax.errors.JaxRuntimeError as e:
      if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
        raise
      compiled, error = None, str(e)
  seconds = time.perf_counter() - start
  warnings = compiler_warnings(log_lines + libtpu_log.new_lines())
  if compiled is None:
    figures = out_of_memory_figures(error)
    temporaries = figures.get("temporaries")
    one_line = " ".join(error.split())
    one_line = one_line[one_line.find("Ran out of memory") :] if "Ran out" in one_line else one_line
    return StepCompile(
      job.name,
      seconds,
      False,
      {
        "arguments": arguments,
        "arguments_unpadded": arguments,
        "temporaries": temporaries,
        "outputs": None,
        "total": figures.get("required", arguments + (temporaries or 0)),
      },
      {},
      warnings,
      error=one_line[:500],
    )
  memory = compiled.memory_analysis()
  total = (
    memory.argument_size_in_bytes
    + memory.temp_size_in_bytes
    + memory.output_size_in_bytes
    - memory.alias_size_in_bytes  # donated state: outputs reuse the arguments' buffers
  )
  per_device = {
    "arguments": int(memory.argument_size_in_bytes),
    "arguments_unpadded": arguments,
    "temporaries": int(memory.temp_size_in_bytes),
    "outputs": int(memory.output_size_in_bytes),
    "aliased": int(memory.alias_size_in_bytes),
    "generated_code": int(memory.generated_code_size_in_bytes),
    "total": int(total),
  }
  return StepCompile(
    job.name,
    seconds,
    total <= hbm_bytes,
    per_device,
    collectives_per_step(compiled.as_text()),
    warnings,
    compiled=compiled,
  )


# ========================================================================== the report


def build_report(
  topology: Topology, program: Program, results: Sequence[StepCompile]
) -> dict[str, Any]:
  """The JSON report (its top-level keys are a contract; see docs/tpu.md)."""
  train = results[0]
  devices = program.mesh.devices.size
  peak = topology.chip.peak_bf16_flops * devices
  step_at_peak = program.model_flops_per_step / peak
  return {
    "topology": topology.description,
    "device_kind": program.mesh.devices.flat[0].device_kind,
    "num_devices": int(devices),
    "num_slices": topology.num_slices,
    "mesh": {k: int(v) for k, v in program.mesh.shape.items()},
    "per_device_bytes": train.per_device_bytes,
    "hbm_bytes_per_device": topology.chip.hbm_bytes,
    "fits": all(r.fits for r in results),
    "model_flops_per_step": program.model_flops_per_step,
    # upstream.XLA_COST_ANALYSIS_LOOPS
    "model_flops_note": "analytic (albert_flax.flops); XLA's cost_analysis counts a scanned "
    "layer once, so it is not used",
    "peak_bf16_flops_per_device": topology.chip.peak_bf16_flops,
    "step_seconds_at_peak": step_at_peak,
    "step_seconds_at_50pct": 2 * step_at_peak,
    "examples_per_second_at_peak": program.batch_size / step_at_peak,
    "examples_per_second_at_50pct": program.batch_size / (2 * step_at_peak),
    "batch_size": program.batch_size,
    "collectives": train.collectives,
    "warnings": sorted({w for r in results for w in r.warnings}),
    "compile_seconds": {r.name: round(r.seconds, 2) for r in results},
    "errors": {r.name: r.error for r in results if r.error},
    "steps": {
      r.name: {
        "fits": r.fits,
        "per_device_bytes": r.per_device_bytes,
        "collectives": r.collectives,
      }
      for r in results
    },
  }


def _gib(x: int | None) -> str:
  if x is None:
    return "?"
  for unit, size in (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
    if x >= size:
      return f"{x / size:.2f} {unit}"
  return f"{x} B"


def format_report(report: dict[str, Any]) -> str:
  """The report as a table for people."""
  rows = [
    (
      "topology",
      f"{report['topology']} ({report['device_kind']}, {report['num_devices']} devices)",
    ),
    ("mesh", " x ".join(f"{k} {v}" for k, v in report["mesh"].items())),
  ]
  for name, step in report["steps"].items():
    b = step["per_device_bytes"]
    rows.append(
      (
        f"{name} per device",
        f"arguments {_gib(b['arguments'])} + temporaries {_gib(b['temporaries'])} + outputs "
        f"{_gib(b['outputs'])} -> {_gib(b['total'])} of {_gib(report['hbm_bytes_per_device'])}"
        f" HBM: {'fits' if step['fits'] else 'DOES NOT FIT'}",
      )
    )
  rows += [
    ("model FLOPs / step", f"{report['model_flops_per_step']:.4g} (analytic)"),
    (
      "step at peak / 50%",
      f"{report['step_seconds_at_peak'] * 1e3:.3g} ms / {report['step_seconds_at_50pct'] * 1e3:.3g}"
      f" ms ({report['examples_per_second_at_peak']:.0f} / "
      f"{report['examples_per_second_at_50pct']:.0f} examples/s)",
    ),
    ("compile seconds", ", ".join(f"{k} {v}" for k, v in report["compile_seconds"].items())),
  ]
  for op, c in report["collectives"].items():
    rows.append((f"  {op}", f"{c['count']} per step, {c['bytes'] / 2**20:.1f} MiB per device"))
  for w in report["warnings"]:
    rows.append(("warning", w[:200]))
  for name, e in report["errors"].items():
    rows.append((f"{name} error", e))
  width = max(len(r[0]) for r in rows)
  return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


# ========================================================================== the driver


def compile_for_topology(
  config: ml_collections.ConfigDict, build: BuildFn, topology: Topology, train_only: bool = False
) -> tuple[dict[str, Any], list[StepCompile]]:
  """Build the program over the slice's devices, compile its steps, report.

  The steps after one that does not fit are not compiled (nor any but the train step with
  `train_only`).
  """
  program = build(config, topology.devices())
  results = []
  for job in program.jobs[: 1 if train_only else None]:
    results.append(compile_job(job, topology.chip.hbm_bytes))
    if not results[-1].fits:
      break  # the train step decides; the others would only take compile time
  return build_report(topology, program, results), results


def _suggestions(
  config: ml_collections.ConfigDict, report: dict[str, Any]
) -> list[tuple[str, dict]]:
  """(description, {config key: value}) of changes that lower memory per chip, cheapest first:
  remat, a larger fsdp axis (parameters and optimizer state split further), and gradient
  accumulation (activations of a micro-batch), up to the factor that scaling the compiler's
  temporaries down linearly says should fit."""
  out = []
  if config.remat != "full":
    out.append((f"remat 'full' (from {config.remat!r})", {"remat": "full"}))
  devices, fsdp, tensor = report["num_devices"], config.mesh.fsdp, config.mesh.tensor
  for factor in (2, 4, 8):
    new_fsdp = fsdp * factor
    if new_fsdp * tensor > devices or devices % (new_fsdp * tensor):
      break
    out.append(
      (
        f"a larger fsdp axis ({fsdp} -> {new_fsdp}, data -1)",
        {"mesh.fsdp": new_fsdp, "mesh.data": -1},
      )
    )
  b = report["per_device_bytes"]
  room = 0.9 * report["hbm_bytes_per_device"] - (b["arguments"] or 0)
  needed = (b["temporaries"] or 0) / room if room > 0 else 2
  rows = config.batch_size // max(1, devices // tensor)  # rows per batch shard
  factor = 2
  while factor <= rows:
    if rows % factor == 0:
      accum = config.grad_accum_steps * factor
      out.append((f"grad_accum_steps {accum}", {"grad_accum_steps": accum}))
    if factor >= needed:
      break
    factor *= 2
  return out


def _with(config: ml_collections.ConfigDict, changes: dict[str, Any]) -> ml_collections.ConfigDict:
  new = ml_collections.ConfigDict(config.to_dict())
  for key, value in changes.items():
    target = new
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return new


def compile_only(
  config: ml_collections.ConfigDict,
  build: BuildFn,
  topology: str,
  num_slices: int = 1,
  report_path: str | None = None,
  suggest: bool = False,
  print_fn: Callable[[str], None] = print,
  save_path: str | None = None,
) -> int:
  """The `--compile_only` mode of both programs; returns the exit status (0: it fits).

  Writes the JSON report to `report_path` whether or not the step fits. When it does not: the
  compiler's figures in one line, and what would make it fit, each compiled when `suggest`.
  save_path: when the steps fit, save them there for a run's --load_compiled (compiled_steps).
  """
  slice_ = parse_topology(topology, num_slices)
  program = build(config, slice_.devices())
  report, results = compile_for_topology(config, lambda *_: program, slice_)
  print_fn(format_report(report))
  if save_path and report["fits"]:
    record = compiled_steps.metadata(
      config, program.mesh, program.keys_not_in_steps, slice_.description
    )
    compiled_steps.save(save_path, {r.name: r.compiled for r in results}, record)
    print_fn(f"saved the compiled steps to {save_path} (a run's --load_compiled={save_path})")
  elif save_path:
    print_fn(f"not saved to {save_path}: the steps do not fit")
  if not report["fits"]:
    b = report["per_device_bytes"]
    print_fn(
      f"does not fit on {slice_.description}: "
      + (
        "; ".join(report["errors"].values())
        or f"{_gib(b['total'])} per device > {_gib(report['hbm_bytes_per_device'])} HBM"
      )
    )
    tried = []
    for description, changes in _suggestions(config, report):
      line = {"change": description, "config": changes}
      if suggest:
        try:
          candidate, _ = compile_for_topology(
            _with(config, changes), build, slice_, train_only=True
          )
          line.update(
            fits=candidate["fits"],
            total_bytes=candidate["per_device_bytes"]["total"],
            mesh=candidate["mesh"],
          )
        except ValueError as e:  # e.g. a batch the new mesh cannot split
          line.update(fits=False, error=str(e))
      tried.append(line)
      flags = " ".join(f"--config.{k}={v}" for k, v in changes.items())
      verdict = (
        ""
        if "fits" not in line
        else f": {'fits' if line['fits'] else 'does not fit'}"
        + (f" ({_gib(line.get('total_bytes'))})" if line.get("total_bytes") else "")
      )
      print_fn(f"  try {description}: {flags}{verdict}")
    report["suggestions"] = tried
  if report_path:
    with open(report_path, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)
      f.write("\n")
  return 0 if report["fits"] else 1


# ========================================================================== command-line flags


@dataclasses.dataclass(frozen=True)
class Flags:
  """The compile-only flags of both programs (absl FlagHolders), from `define_flags`."""

  compile_only: Any
  topology: Any
  num_slices: Any
  report: Any
  suggest: Any
  save_compiled: Any
  load_compiled: Any

  def run(self, config: ml_collections.ConfigDict, build: BuildFn) -> int:
    """`compile_only` with the flags' values; raises ValueError without --topology."""
    if not self.topology.value:
      raise ValueError("--compile_only needs --topology (e.g. v4-512 or v4:4x8x8)")
    return compile_only(
      config,
      build,
      self.topology.value,
      self.num_slices.value,
      self.report.value,
      self.suggest.value,
      save_path=self.save_compiled.value,
    )


def define_flags() -> Flags:
  """Define --compile_only, --topology, --num_slices, --report, --suggest, --save_compiled and
  --load_compiled (absl flags)."""
  from absl import flags

  return Flags(
    flags.DEFINE_bool(
      "compile_only", False, "Compile the steps for --topology's TPU slice, report, and exit."
    ),
    flags.DEFINE_string(
      "topology",
      None,
      "TPU slice for --compile_only: jax's name (v4:8x8x8, v5e:16x16, v5p:4x4x8, v6e:8x8, "
      "v3:8x8) or gcloud's accelerator type (v4-1024, v5litepod-256, v5p-128, v6e-64, v3-128).",
    ),
    flags.DEFINE_integer(
      "num_slices", 1, "--compile_only: this many slices, the data axis across them."
    ),
    flags.DEFINE_string("report", None, "--compile_only: write the JSON report to this file."),
    flags.DEFINE_bool(
      "suggest", False, "--compile_only: when it does not fit, compile each suggested change."
    ),
    flags.DEFINE_string(
      "save_compiled",
      None,
      "--compile_only: save the compiled steps to this directory (local or gs://) for a run's "
      "--load_compiled.",
    ),
    flags.DEFINE_string(
      "load_compiled",
      None,
      "Run the steps saved by --compile_only --save_compiled in this directory instead of "
      "compiling them, after checking that jax, libtpu, the slice, mesh and config match.",
    ),
  )
