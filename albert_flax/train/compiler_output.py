"""What the TPU compiler says about a compiled step, for the compile-only report (`aot`).

From jax's own APIs the report takes what they give: `compiled.memory_analysis()` (the figures
per device, in `aot.compile_job`). Read from text, because no API gives it:
- the collectives one execution runs (`collectives_per_step`), from the compiled module's HLO
  text: jaxlib's HloModule objects give computations and opcodes but not an instruction's
  result shape, called computations or a loop's trip count; and `cost_analysis()` counts a loop
  body once (upstream.XLA_COST_ANALYSIS_LOOPS), with no per-collective figures;
- the compiler's warnings (`compiler_warnings`), from its C++ log on stderr and libtpu's log
  files (`captured_stderr`, `LibtpuLog`);
- a refusal's figures (`out_of_memory_figures`): a step that does not fit has no compiled object
  to ask, only the error message.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
  """Capture the compiler's C++ log (file descriptor 2), then echo it; yields its lines."""
  lines: list[str] = []
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield lines
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      text = tmp.read().decode("utf-8", "replace")
      sys.stderr.write(text)
      lines.extend(text.splitlines())


class LibtpuLog:
  """What libtpu's compiler logged while in use: libtpu writes its warnings to log files
  ($TPU_LOG_DIR, default /tmp/tpu_logs, named after the process id), not to stderr."""

  def __init__(self):
    self.directory = os.environ.get("TPU_LOG_DIR") or "/tmp/tpu_logs"
    self.start = self._sizes()

  def _sizes(self) -> dict[str, int]:
    try:
      names = os.listdir(self.directory)
    except OSError:
      return {}
    suffix = f".{os.getpid()}"
    paths = [
      os.path.join(self.directory, n) for n in names if n.endswith(suffix) and ".WARNING." in n
    ]
    return {p: os.path.getsize(p) for p in paths if os.path.isfile(p)}

  def new_lines(self) -> list[str]:
    lines = []
    for path, size in self._sizes().items():
      with open(path, "rb") as f:
        f.seek(self.start.get(path, 0) if self.start.get(path, 0) <= size else 0)
        lines += f.read().decode("utf-8", "replace").splitlines()
    return lines


# Compiler messages that cost speed or memory at scale (XLA's log lines contain them).
_WARNING_PATTERNS = (
  "Involuntary full rematerialization",
  "rematerializ",
  "Can't reduce memory use below",
  "exceeds available",
)


def compiler_warnings(lines: Sequence[str]) -> list[str]:
  found = []
  for line in lines:
    if any(p in line for p in _WARNING_PATTERNS):
      message = line.split("] ", 1)[-1].strip()
      message = message if len(message) <= 600 else message[:600] + "..."
      if message not in found:
        found.append(message)
  return found


_COLLECTIVES = (
  "all-gather",
  "all-reduce",
  "reduce-scatter",
  "all-to-all",
  "collective-permute",
  "ragged-all-to-all",
)
_DTYPE_BYTES = {
  "pred": 1,
  "s8": 1,
  "u8": 1,
  "s16": 2,
  "u16": 2,
  "bf16": 2,
  "f16": 2,
  "s32": 4,
  "u32": 4,
  "f32": 4,
  "s64": 8,
  "u64": 8,
  "f64": 8,
}
_ARRAY = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*(?:\(.*\))?\s*->.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s([a-z][\w\-]*)\(")
_CALLED = re.compile(
  r"\b(body|condition|to_apply|calls|true_computation|false_computation)=%?([\w.\-]+)"
)
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')


def _result_bytes(result_type: str) -> int:
  """Bytes of an HLO result type; of a tuple, its largest element (an async collective's
  (operand, result) pair counts as its result)."""
  sizes = [
    math.prod(int(d) for d in dims.split(",") if d) * _DTYPE_BYTES.get(dtype, 4)
    for dtype, dims in _ARRAY.findall(result_type)
    if dtype in _DTYPE_BYTES
  ]
  return max(sizes, default=0)


def collectives_per_step(hlo_text: str) -> dict[str, dict[str, int]]:
  """{op: {"count", "bytes"}} of the collectives one execution of the compiled module runs.

  An op inside a while loop (the scanned layers, gradient accumulation) counts once per
  iteration, using the trip count XLA recorded; bytes are the result's, per device.
  """
  computations: dict[str, list[str]] = {}
  entry, current = None, None
  for line in hlo_text.splitlines():
    match = _COMPUTATION.match(line)
    if match and not line.startswith(" "):
      current = match.group(1)
      computations[current] = []
      if line.startswith("ENTRY"):
        entry = current
    elif current is not None and line.strip() and line.strip() != "}":
      computations[current].append(line)
  if entry is None:
    raise ValueError("no ENTRY computation in the HLO text")

  totals: dict[str, dict[str, int]] = {}

  def visit(name: str, times: int, depth: int = 0) -> None:
    if depth > 64:
      raise ValueError("HLO call graph deeper than 64 levels")
    for line in computations.get(name, ()):
      match = _INSTRUCTION.match(line)
      if not match:
        continue
      result_type, opcode = match.groups()
      op = opcode[: -len("-start")] if opcode.endswith("-start") else opcode
      if op in _COLLECTIVES and not opcode.endswith("-done"):
        entry_ = totals.setdefault(op, {"count": 0, "bytes": 0})
        entry_["count"] += times
        entry_["bytes"] += times * _result_bytes(result_type)
      trips = 1
      if opcode == "while":
        found = _TRIP_COUNT.search(line)
        trips = int(found.group(1)) if found else 1
      for kind, callee in _CALLED.findall(line):
        if kind == "to_apply" and op in _COLLECTIVES:
          continue  # a reduction's combiner, not a computation that runs collectives
        visit(callee, times * (trips if kind == "body" else 1), depth + 1)
      for branches in _BRANCHES.findall(line):
        for callee in branches.split(","):
          visit(callee.strip().lstrip("%"), times, depth + 1)

  visit(entry, 1)
  return dict(sorted(totals.items()))


def _parse_size(text: str) -> int:
  value, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", text).groups()
  return int(float(value) * 1024 ** " KMGT".index(unit or " "))


def out_of_memory_figures(message: str) -> dict[str, int]:
  """The byte figures of XLA's "Ran out of memory" message, e.g. "the total memory required for
  HLO temporaries (204.56G) exceeds available HBM (15.75G)"."""
  figures = {}
  for label, key in (
    (r"HLO temporaries \(([\d.]+[KMGT]?)\)", "temporaries"),
    (r"available HBM \(([\d.]+[KMGT]?)\)", "available_hbm"),
    (r"total memory required[^(]*\(([\d.]+[KMGT]?)\)", "required"),
  ):
    found = re.search(label, message)
    if found:
      figures[key] = _parse_size(found.group(1))
  return figures
