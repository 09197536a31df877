"""What a training step achieves, seen from the host: rates, model FLOP/s, MFU, input waits,
device memory, and steps that are slower than they should be.

    rates = StepRates(flops_fn, examples_per_step=4096)   # flops_fn(batch, seq) -> model FLOPs
    rates.add_batch(host_batch)                           # per step: its rows, tokens, FLOPs
    rates.add_interval(seconds, input_wait, excluded)     # per step: from the loop's clocks
    row.update(rates.row())                               # at a log step: the interval's figures

Nothing here touches the device: the times are host clocks around what the loop already does
(the loop waits for the step before at every step, or only at log steps: the figures are means
over the interval between two log rows, whichever it is). Per row:

  step_time            seconds per step (the interval's training time / its steps)
  examples_per_second  rows of the global batch per second
  tokens_per_second    real tokens (attention_mask), padding left out, per second
  token_share          real tokens / positions computed (1 - the padding's share)
  tflops_per_device    model FLOPs (albert_flax.flops, analytic; remat's recomputation is not
                       model work) per second per device, in TFLOP/s
  mfu                  tflops_per_device / the device's peak (`device_peak_flops`), when known
  input_wait_share     the share of the training time spent in the input pipeline's next()
  memory_gib, memory_peak_gib   device 0's memory in use / its peak (`device.memory_stats()`),
                       where the backend reports it (GPUs, TPUs; not the CPU)

"Training time" is the interval's wall time less what compiled, evaluated, saved checkpoints or
took a profile (albert_flax.train.goodput charges those to their own parts), so an interval with
an evaluation in it still gives the training rate. The identity the tests check:
tokens_per_second / token_share * FLOPs per position / devices = tflops_per_device.
"""

from __future__ import annotations

import collections
import logging
import math
import statistics
from collections.abc import Callable, Mapping
from typing import Any

import jax

from albert_flax.train import tpu_topologies

log = logging.getLogger(__name__)

# The keys `StepRates.row` adds: timings, which differ between two runs of the same computation.
TIMING_KEYS = (
  "step_time",
  "examples_per_second",
  "tokens_per_second",
  "token_share",
  "tflops_per_device",
  "mfu",
  "input_wait_share",
  "memory_gib",
  "memory_peak_gib",
)

# ================================================================================ peak FLOP/s

# Dense bf16 peak FLOP/s per jax device, from the vendors' data sheets (without 2:4 sparsity,
# which doubles NVIDIA's headline figures). TPUs: albert_flax.train.tpu_topologies.CHIPS (Google
# Cloud's TPU system architecture pages: v3 123 TFLOP/s per chip = 2 devices, v4 275, v5e 197,
# v5p 459, v6e 918 per chip = 1 device), plus v2 (45 TFLOP/s per chip of 2 TensorCores, each a
# device). NVIDIA: the A100 data sheet (bf16 Tensor Core 312 TFLOP/s, SXM and PCIe), H100 (SXM
# 989, PCIe 756), H200 (SXM 989, NVL 835), L4 (121), L40 (181), L40S (362), B200 (2250, the HGX
# B200 data sheet's 18 PFLOP/s dense over 8 GPUs). Matched against `device.device_kind`, the
# longest name first ("H100 PCIe" before "H100", "L40S" before "L4").
_TPU_KINDS = (
  ("TPU v2", 45e12 / 2),
  ("TPU v3", tpu_topologies.CHIPS["v3"].peak_bf16_flops),
  ("TPU v4", tpu_topologies.CHIPS["v4"].peak_bf16_flops),
  ("TPU v5 lite", tpu_topologies.CHIPS["v5e"].peak_bf16_flops),
  ("TPU v5e", tpu_topologies.CHIPS["v5e"].peak_bf16_flops),
  ("TPU v5p", tpu_topologies.CHIPS["v5p"].peak_bf16_flops),
  ("TPU v5", tpu_topologies.CHIPS["v5p"].peak_bf16_flops),  # jax's name for a v5p device
  ("TPU v6 lite", tpu_topologies.CHIPS["v6e"].peak_bf16_flops),
  ("TPU v6e", tpu_topologies.CHIPS["v6e"].peak_bf16_flops),
)
_GPU_KINDS = (
  ("A100", 312e12),
  ("H100 PCIe", 756e12),
  ("H100", 989e12),
  ("H200 NVL", 835e12),
  ("H200", 989e12),
  ("GH200", 989e12),
  ("L40S", 362e12),
  ("L40", 181e12),
  ("L4", 121e12),
  ("B200", 2250e12),
)
PEAK_FLOPS_BY_KIND = _TPU_KINDS + _GPU_KINDS


def device_peak_flops(device_kind: str) -> float | None:
  """The dense bf16 peak FLOP/s of one jax device of `device_kind` (`jax.Device.device_kind`,
  e.g. "TPU v4", "NVIDIA H100 80GB HBM3"), or None when it is not in the table (a CPU)."""
  kind = device_kind.strip()
  for name, peak in sorted(PEAK_FLOPS_BY_KIND, key=lambda item: -len(item[0])):  # stable
    if name.lower() in kind.lower():
      return peak
  return None


def device_memory() -> dict[str, float]:
  """{"memory_gib", "memory_peak_gib"} of the first local device, or {} when the backend does
  not report them (the CPU's memory_stats() is None)."""
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:  # a backend without the call
    stats = None
  if not stats or "bytes_in_use" not in stats:
    return {}
  out = {"memory_gib": stats["bytes_in_use"] / 2**30}
  if "peak_bytes_in_use" in stats:
    out["memory_peak_gib"] = stats["peak_bytes_in_use"] / 2**30
  return out


# ======================================================================================= rates


class StepRates:
  """The figures of the module docstring over the steps since the last `row()`.

  Args:
    flops_fn: (batch rows, sequence length) -> model FLOPs of one training step on them
      (functools.partial of albert_flax.flops.model_flops_per_step).
    examples_per_step: the global batch (rows); a host batch holding fewer (this process's
      share) has its tokens scaled up to it.
    num_devices: the devices the step runs on (default: all of them).
    device_kind: for the peak (default: the first device's).
  """

  def __init__(
    self,
    flops_fn: Callable[[int, int], float],
    examples_per_step: int,
    num_devices: int | None = None,
    device_kind: str | None = None,
  ):
    self.flops_fn = flops_fn
    self.examples_per_step = examples_per_step
    self.num_devices = num_devices or jax.device_count()
    kind = device_kind or jax.devices()[0].device_kind
    self.peak = device_peak_flops(kind)
    if self.peak is None:
      log.info(
        "peak FLOP/s of %r unknown: MFU is not reported, model TFLOP/s per device is "
        "(benchmarks/bench_mfu.py measures a CPU's matmul peak)",
        kind,
      )
    self._flops_cache: dict[tuple[int, int], float] = {}
    self._reset()

  def _reset(self) -> None:
    self.steps = 0
    self.seconds = self.input_wait = 0.0
    self.examples = self.tokens = self.positions = 0.0
    self.flops = 0.0

  def add_batch(self, batch: Mapping[str, Any]) -> None:
    """Count one step's host batch: input_ids [B, S] or [B, C, S] (multiple choice), with its
    attention_mask. Host numpy only: a sum over the mask, no device work."""
    shape = batch["input_ids"].shape
    scale = self.examples_per_step / shape[0]  # this process's share -> the global batch
    rows, seq = int(math.prod(shape[:-1]) * scale), int(shape[-1])
    mask = batch.get("attention_mask")
    # ndarray.sum, not np.sum: a few microseconds less per step (numpy's dispatch).
    tokens = float(mask.sum()) if mask is not None else float(rows * seq)
    key = (rows, seq)
    if key not in self._flops_cache:
      self._flops_cache[key] = float(self.flops_fn(rows, seq))
    self.examples += self.examples_per_step
    self.tokens += tokens * scale
    self.positions += rows * seq
    self.flops += self._flops_cache[key]

  def add_interval(self, seconds: float, input_wait: float, steps: int = 1) -> None:
    """Training time (wall time less what compiled, evaluated, saved or profiled) of `steps`
    steps (0: the rest of a step counted already), and the part spent waiting for input."""
    self.steps += steps
    self.seconds += max(seconds, 0.0)
    self.input_wait += input_wait

  def row(self) -> dict[str, float]:
    """The interval's figures (module docstring); the counts start again from zero."""
    out: dict[str, float] = {}
    if self.steps and self.seconds > 0:
      t = self.seconds
      tflops = self.flops / t / self.num_devices / 1e12
      out.update(
        step_time=t / self.steps,
        examples_per_second=self.examples / t,
        tokens_per_second=self.tokens / t,
        token_share=self.tokens / self.positions if self.positions else 1.0,
        tflops_per_device=tflops,
        input_wait_share=min(self.input_wait / t, 1.0),
      )
      if self.peak:
        out["mfu"] = tflops * 1e12 / self.peak
    out.update(device_memory())
    self._reset()
    return out


# ===================================================================================== anomalies


class SlowStepDetector:
  """Warns (one line) when a step takes longer than `factor` x the median of the recent ones.

  Steps that compiled, evaluated, saved a checkpoint or took a profile are neither judged nor
  remembered (`observe(..., excluded=True)`): they are slow for a known reason. On a pod a
  straggling host or a throttled chip shows up this way. `window` recent steps make the
  median (taken again every `refresh` steps: sorting 100 numbers at every step would cost more
  than the rest of the loop's bookkeeping); the first `min_steps` are only remembered.
  """

  def __init__(self, factor: float = 3.0, window: int = 100, min_steps: int = 5, refresh: int = 10):
    self.factor, self.min_steps, self.refresh = factor, min_steps, refresh
    self._recent: collections.deque[float] = collections.deque(maxlen=window)
    self._median: float | None = None
    self._since_median = 0
    self.warnings: list[tuple[int, float, float]] = []  # (step, seconds, median)

  def observe(self, step: int, seconds: float, excluded: bool = False) -> bool:
    """Judge the step; True when it was slow (and the warning was logged)."""
    if excluded or self.factor <= 0:
      return False
    slow = False
    if len(self._recent) >= self.min_steps:
      if self._median is None or self._since_median >= self.refresh:
        self._median, self._since_median = statistics.median(self._recent), 0
      median = self._median
      self._since_median += 1
      if median > 0 and seconds > self.factor * median:
        slow = True
        self.warnings.append((step, seconds, median))
        log.warning(
          "slow step %d: %.3g s, %.1fx the median step time (%.3g s over the last %d steps)",
          step,
          seconds,
          seconds / median,
          median,
          len(self._recent),
        )
    self._recent.append(seconds)
    return slow
