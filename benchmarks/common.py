"""Shared pieces of the benchmark scripts: machine description, interleaved timing, statistics,
synthetic pretraining batches and the model-FLOPs formula.

Every script prints its figures and, with `--json PATH`, writes them with `machine_info()` so a
row of RESULTS.md can be traced to the run (date, CPU, load, versions) that produced it.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# The formula lives in the library (the TPU compile report uses it too); re-exported here.
from albert_flax.flops import model_flops_per_token  # noqa: F401

# --------------------------------------------------------------------------- the machine


def cpu_model() -> str:
  """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float]:
  """1, 5 and 15 minute load averages (what `uptime` prints)."""
  return os.getloadavg()


def _version(dist: str) -> str | None:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return None


def machine_info() -> dict[str, Any]:
  """Date, CPU, core count, load and the versions that matter for these figures."""
  import jax  # imported here so `--help` stays fast

  devices = jax.devices()
  return {
    "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    "cpu": cpu_model(),
    "cores": os.cpu_count(),
    "load_avg": [round(x, 2) for x in load_average()],
    "jax_backend": jax.default_backend(),
    "device": devices[0].device_kind if devices else "none",
    "python": platform.python_version(),
    "versions": {
      d: _version(d) for d in ("jax", "jaxlib", "flax", "optax", "transformers", "torch", "numpy")
    },
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def print_machine(info: Mapping[str, Any]) -> None:
  v = info["versions"]
  print(
    f"# {info['date']}  cpu={info['cpu']} cores={info['cores']} backend={info['jax_backend']} "
    f"({info['device']}) load={info['load_avg']}"
  )
  print("# " + " ".join(f"{k}={v[k]}" for k in v if v[k]))


# --------------------------------------------------------------------------- timing


def block(tree: Any) -> Any:
  """Wait for every array in `tree` (JAX arrays; other leaves pass through)."""
  import jax

  return jax.block_until_ready(tree)


def time_call(fn: Callable[[], Any], calls: int = 1) -> tuple[float, float]:
  """(wall seconds, process CPU seconds) per call of `fn`, averaged over `calls` back-to-back
  calls (fn must block). CPU time sums all threads of this process: under load from other
  processes it stays near the work done, where wall time grows, so it is reported beside it."""
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(calls):
    fn()
  return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


@dataclasses.dataclass
class Timings:
  """Per-repeat seconds per call: wall[name] and cpu[name] lists, one entry per repeat."""

  wall: dict[str, list[float]]
  cpu: dict[str, list[float]]
  load: list[float]  # 1-minute load average after each repeat


def interleave(
  runners: Mapping[str, Callable[[], Any]],
  repeats: int,
  calls: int = 1,
  warmup: int = 1,
  verbose: bool = True,
  repeats_for: Mapping[str, int] | None = None,
) -> Timings:
  """Time several implementations in turns: repeat r runs each of them `calls` times.

  The order rotates from one repeat to the next, so a burst of load from another process hits
  the implementations evenly and the per-repeat ratios stay meaningful. Each runner must block
  until its result is ready; `warmup` untimed calls each come first (compilation).
  `repeats_for` caps the repeats of slow runners (they take part in the first ones only).
  """
  if repeats < 1 or calls < 1:
    raise ValueError(f"repeats and calls must be >= 1, got {repeats}, {calls}")
  names = list(runners)
  limit = {n: min(repeats, (repeats_for or {}).get(n, repeats)) for n in names}
  for name in names:
    for _ in range(warmup):
      runners[name]()
  out = Timings({n: [] for n in names}, {n: [] for n in names}, [])
  for r in range(repeats):
    order = names[r % len(names) :] + names[: r % len(names)]
    for name in order:
      if r >= limit[name]:
        continue
      wall, cpu = time_call(runners[name], calls)
      out.wall[name].append(wall)
      out.cpu[name].append(cpu)
    out.load.append(load_average()[0])
    if verbose:
      print(
        f"  repeat {r + 1}/{repeats}: "
        + "  ".join(f"{n}={out.wall[n][-1] * 1e3:.0f}ms" for n in names if r < limit[n])
        + f"  load={out.load[-1]:.2f}",
        flush=True,
      )
  return out


@dataclasses.dataclass(frozen=True)
class Spread:
  """Median and range of a sample (ratios or rates)."""

  median: float
  low: float
  high: float

  @classmethod
  def of(cls, values: Sequence[float]) -> Spread:
    if not values:
      raise ValueError("no values to summarize")
    return cls(statistics.median(values), min(values), max(values))

  def fmt(self, digits: int = 2) -> str:
    return f"{self.median:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def paired_ratios(ours: Sequence[float], theirs: Sequence[float]) -> Spread:
  """Speed ratio ours/theirs (= their time / our time) per repeat, summarized.

  Repeat r of one is paired with repeat r of the other; a side timed in fewer repeats is paired
  over those only.
  """
  pairs = list(zip(ours, theirs))
  if not pairs:
    raise ValueError("no paired samples")
  return Spread.of([t / o for o, t in pairs])


# --------------------------------------------------------------------------- workloads


def pretraining_batch(
  batch: int, seq: int, vocab_size: int, num_predictions: int = 20, seed: int = 0
) -> dict[str, np.ndarray]:
  """A random MLM + SOP batch with the shapes the pretraining program feeds.

  Field names are the pretraining program's: input_ids, attention_mask, token_type_ids
  [batch, seq] int32; masked_lm_positions, masked_lm_ids [batch, P] int32 and masked_lm_weights
  [batch, P] float32; sentence_order_label [batch] int32. The last eighth of each row is padding,
  so masks matter.
  """
  if num_predictions > seq:
    raise ValueError(f"num_predictions {num_predictions} > seq {seq}")
  rng = np.random.default_rng(seed)
  input_ids = rng.integers(5, vocab_size, size=(batch, seq), dtype=np.int32)
  valid = seq - seq // 8
  attention_mask = np.zeros((batch, seq), np.int32)
  attention_mask[:, :valid] = 1
  input_ids[:, valid:] = 0
  token_type_ids = np.zeros((batch, seq), np.int32)
  token_type_ids[:, valid // 2 : valid] = 1
  positions = np.stack(
    [np.sort(rng.choice(np.arange(1, valid), num_predictions, replace=False)) for _ in range(batch)]
  ).astype(np.int32)
  masked_ids = np.take_along_axis(input_ids, positions, axis=1).astype(np.int32)
  input_ids[np.arange(batch)[:, None], positions] = 4  # [MASK]
  return {
    "input_ids": input_ids,
    "attention_mask": attention_mask,
    "token_type_ids": token_type_ids,
    "masked_lm_positions": positions,
    "masked_lm_ids": masked_ids,
    "masked_lm_weights": np.ones((batch, num_predictions), np.float32),
    "sentence_order_label": rng.integers(0, 2, size=(batch,), dtype=np.int32),
  }


def matmul_peak(dtype: str, n: int, calls: int = 5) -> tuple[float, float]:
  """Best (FLOP per wall second, FLOP per CPU second) of an n x n x n jnp.dot in `dtype`.

  For a low-precision dtype both forms a model uses are timed, the product in that dtype and
  with float32 accumulation (`preferred_element_type`), and the faster counts: a backend may
  run one of them on a slower path (XLA's CPU backend does, for bf16 with f32 output).
  CPU seconds sum this process's threads: on a loaded machine the per-CPU-second rate still says
  how fast the cores that ran it worked.
  """
  import jax
  import jax.numpy as jnp

  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype)
  dots = [jax.jit(jnp.dot)]
  if jnp.dtype(dtype) != jnp.float32:
    dots.append(jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32)))
  best_wall = best_cpu = float("inf")
  for dot in dots:
    jax.block_until_ready(dot(a, b))
    for _ in range(calls):
      wall, cpu = time_call(lambda dot=dot: jax.block_until_ready(dot(a, b)))
      best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
  return 2 * n**3 / best_wall, 2 * n**3 / best_cpu


# --------------------------------------------------------------------------- output


def write_json(path: str | None, payload: Mapping[str, Any]) -> None:
  if path:
    with open(path, "w", encoding="utf-8") as f:
      json.dump(payload, f, indent=2, default=str)
      f.write("\n")
    print(f"# wrote {path}")
