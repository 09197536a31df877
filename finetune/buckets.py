"""Length buckets: batches padded to the smallest of a few lengths that holds their longest row.

Tasks build features padded to `max_seq_length`; a bucketed batch is the same rows cut to a
shorter width ([batch, width] or [batch, choices, width]), so each bucket is one more shape for
jit to compile (once) and the step computes on far fewer padding positions. The length of a row
is its attention mask's count (right padding), for multiple choice the longest of its choices:
the choices of one example share one length.

Training (`bucketed_train_batches`): each epoch a fresh permutation (seeded by seed and epoch,
as `finetune.data.train_batches`), the whole epoch is the shuffle window: its rows are grouped
by bucket, each bucket cut into full batches, the rows left over in the buckets (fewer than a
batch each) sorted by length and cut into batches padded to their longest row's bucket, and the
epoch's batches shuffled. Rows that fill no batch at the end of an epoch are carried into the
next one, as without buckets. Every batch is a function of (seed, step): a resumed run sees the
batches the uninterrupted run would have (`tf.data`'s `bucket_by_sequence_length` is the idea;
it is not used because it is a TensorFlow input pipeline and its batches are not indexable by
step).

Per task: GLUE rows are one sentence or one pair; RACE rows are [choices, seq] and take their
longest choice's bucket; NER rows are sentence windows, their labels cut with the inputs; SQuAD
rows are doc-stride windows, which for contexts longer than max_seq_length are full (the top
bucket): only short contexts and the last window of a long one land in smaller buckets, so
bucketing gains little on SQuAD and changes nothing there but the padding it skips.

Default widths (`fit_buckets`, config.length_buckets None): as many as the powers of two from
32 up to max_seq_length (5 for 512), placed where the training rows are: the multiples of 8 that
make the fewest padded positions, so a set of short sentences gets 8, 16, 24, 32, 48 and one of
sentence pairs 32, 40, 56, 72, 120 rather than 32, 64, 128 for both. Fixed powers of two pad
an MNLI-like pair by 1.45x on average and an SST-2-like sentence by 2.6x (mean 13 tokens, most
in batches of 32), the fitted widths by 1.2-1.3x, for the same number of programs. They are a
function of the training rows only, so every process, every seed and a resumed run get the
same.

Evaluation (`eval_batch_plan`): rows sorted by length, cut in order into batches padded to
their longest row's bucket; the caller writes the outputs back in the original order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from finetune.data import Features

SMALLEST_DEFAULT_BUCKET = 32
# Fitted widths are multiples of this: the float32 vector width of AVX/AVX2 and a TPU vreg's
# sublanes, so a width never leaves a vector part-filled.
FITTED_WIDTH_MULTIPLE = 8


def default_buckets(max_seq_length: int) -> tuple[int, ...]:
  """Powers of two from 32 below `max_seq_length`, then `max_seq_length` itself."""
  buckets = []
  width = SMALLEST_DEFAULT_BUCKET
  while width < max_seq_length:
    buckets.append(width)
    width *= 2
  return (*buckets, max_seq_length)


def fit_buckets(
  lengths: np.ndarray, count: int, max_seq_length: int, multiple: int = FITTED_WIDTH_MULTIPLE
) -> tuple[int, ...]:
  """At most `count` widths placed where the rows are, then `max_seq_length`.

  The widths (multiples of `multiple`, the largest holding the longest row) minimize the padded
  positions of the rows, each padded to the smallest width that holds it: what the training
  step computes, since a bucketed batch's rows share their bucket. Exact, by dynamic
  programming over the candidate widths (at most max_seq_length / multiple of them).
  `max_seq_length` comes last for rows of other sets (evaluation) longer than any of these;
  a run compiles it only if such a row comes.

  Powers of two from 32 would put most of a set of short sentences (SST-2: mean 13 tokens) in
  batches of 32, ~2.5x the positions of the rows; the same number of widths fitted to them
  compute ~1.25x (benchmarks/RESULTS.md, fine-tuning with length buckets).
  """
  lengths = np.asarray(lengths, np.int64)
  if lengths.size == 0:
    raise ValueError("no rows to fit length buckets to")
  if int(lengths.max()) > max_seq_length:
    raise ValueError(
      f"a row of {int(lengths.max())} tokens is longer than max_seq_length {max_seq_length}"
    )
  # The only widths worth having: each row's length rounded up. A width between two of these
  # holds the same rows as the next one up, padded further. So every candidate holds a row and
  # each one more width strictly saves positions: take min(count, candidates) of them.
  rounded = np.minimum(-(-lengths // multiple) * multiple, max_seq_length)
  candidates = np.unique(rounded)  # ascending
  rows_upto = np.searchsorted(np.sort(lengths), candidates, side="right")  # rows <= each
  # fewest[i]: fewest positions for the rows <= candidates[i] with the widths chosen so far, the
  # last candidates[i]; one `came_from` row per added width: the width below that choice.
  # (float: inf marks what fewer candidates than widths cannot make; positions stay exact.)
  fewest = (rows_upto * candidates).astype(np.float64)
  came_from = []
  for _ in range(min(count, len(candidates)) - 1):
    below = np.full(len(candidates), -1)
    cost = np.full(len(candidates), np.inf)
    for i in range(1, len(candidates)):
      options = fewest[:i] + (rows_upto[i] - rows_upto[:i]) * candidates[i]
      below[i] = int(np.argmin(options))
      cost[i] = options[below[i]]
    fewest = cost
    came_from.append(below)
  at = len(candidates) - 1
  widths = [int(candidates[at])]
  for below in reversed(came_from):
    at = int(below[at])
    widths.append(int(candidates[at]))
  widths.reverse()
  return (*widths, max_seq_length) if widths[-1] < max_seq_length else tuple(widths)


def resolve_buckets(
  spec: Sequence[int] | None, max_seq_length: int, lengths: np.ndarray | None = None
) -> tuple[int, ...]:
  """The padded lengths a run uses, ascending and ending at `max_seq_length`.

  spec None: fitted to the training rows' `lengths` (`fit_buckets`), as many widths as
  `default_buckets` has, or without `lengths` `default_buckets`; empty: only `max_seq_length`
  (every row padded to it, the behaviour without buckets); else the given lengths,
  `max_seq_length` added when missing so every row fits.
  """
  if spec is None:
    if lengths is None:
      return default_buckets(max_seq_length)
    return fit_buckets(lengths, len(default_buckets(max_seq_length)), max_seq_length)
  try:
    widths = sorted({int(w) for w in spec})
  except (TypeError, ValueError):
    raise ValueError(f"config.length_buckets must be a list of lengths, got {spec!r}") from None
  bad = [w for w in widths if not 0 < w <= max_seq_length]
  if bad:
    raise ValueError(
      f"config.length_buckets {list(spec)}: {bad} outside [1, max_seq_length {max_seq_length}]"
    )
  if not widths or widths[-1] != max_seq_length:
    widths.append(max_seq_length)
  return tuple(widths)


def padded_positions(lengths: np.ndarray, buckets: Sequence[int]) -> int:
  """Positions of the rows ([rows] lengths) each padded to the smallest bucket that holds it:
  what the training step computes."""
  widths = np.asarray(buckets)[np.searchsorted(buckets, lengths, side="left")]
  return int(widths.sum())


def token_share(lengths: np.ndarray, buckets: Sequence[int]) -> float:
  """Tokens / positions when each row is padded to its bucket: how much of the step's work is
  real (1.0: no padding)."""
  return float(np.sum(lengths) / max(1, padded_positions(lengths, buckets)))


def row_lengths(features: Features) -> np.ndarray:
  """[N] int: tokens of each row (the longest choice's for [N, choices, seq] inputs)."""
  mask = np.asarray(features["attention_mask"])
  lengths = mask.reshape(mask.shape[0], -1, mask.shape[-1]).astype(bool).sum(-1).max(-1)
  return lengths.astype(np.int64)


def bucket_width(length: int, buckets: Sequence[int]) -> int:
  """The smallest bucket that holds `length` tokens."""
  at = int(np.searchsorted(buckets, length, side="left"))
  if at == len(buckets):
    raise ValueError(f"a row of {length} tokens is longer than the largest bucket {buckets[-1]}")
  return int(buckets[at])


def trim(features: Features, width: int) -> Features:
  """The features cut to `width` positions: every array shaped like input_ids ([N, seq] or
  [N, choices, seq], possibly with trailing dims) is cut on its sequence axis."""
  shape = features["input_ids"].shape
  axis = len(shape) - 1
  out = {}
  for key, value in features.items():
    if value.shape[: len(shape)] == shape and width < shape[-1]:
      value = value[(slice(None),) * axis + (slice(0, width),)]
    out[key] = value
  return out


# ----------------------------------------------------------------------------- training


def bucketed_batch_indices(
  lengths: np.ndarray, batch_size: int, buckets: Sequence[int], seed: int, start_step: int = 0
) -> Iterator[tuple[np.ndarray, int]]:
  """Endless (row indices [batch_size], padded width): see the module docstring."""
  n = len(lengths)
  if n == 0:
    raise ValueError("no training examples")
  buckets = tuple(int(b) for b in buckets)
  which = np.searchsorted(buckets, lengths, side="left")
  if (which == len(buckets)).any():
    raise ValueError(f"rows longer than the largest bucket {buckets[-1]}: {lengths.max()} tokens")
  step = 0
  epoch = 0
  carried = np.zeros((0,), np.int64)
  while True:
    rng = np.random.default_rng([seed, epoch])
    order = np.concatenate([carried, rng.permutation(n)])
    epoch += 1
    batches: list[np.ndarray] = []
    leftover = []
    for b in range(len(buckets)):
      rows = order[which[order] == b]  # in permutation order: random within the bucket
      full = len(rows) // batch_size * batch_size
      batches.extend(rows[:full].reshape(-1, batch_size))
      leftover.append(rows[full:])
    rest = np.concatenate(leftover)
    rest = rest[np.argsort(lengths[rest], kind="stable")]
    full = len(rest) // batch_size * batch_size
    batches.extend(rest[:full].reshape(-1, batch_size))
    carried = rest[full:]
    for at in rng.permutation(len(batches)):
      if step >= start_step:
        take = batches[at]
        yield take, buckets[int(which[take].max())]
      step += 1


def train_widths(
  lengths: np.ndarray,
  batch_size: int,
  buckets: Sequence[int],
  seed: int,
  start_step: int,
  end_step: int,
) -> list[int]:
  """The distinct padded widths of the training batches of steps [start_step, end_step), in
  ascending order: the train-step programs a run needs (computed from the lengths alone)."""
  possible = {bucket_width(int(n), buckets) for n in np.unique(lengths)}
  widths: set[int] = set()
  batches = bucketed_batch_indices(lengths, batch_size, buckets, seed, start_step)
  for _ in range(max(0, end_step - start_step)):
    widths.add(next(batches)[1])
    if widths == possible:
      break
  return sorted(widths)


def bucketed_train_batches(
  features: Features,
  batch_size: int,
  seed: int,
  buckets: Sequence[int],
  start_step: int = 0,
) -> Iterator[Features]:
  """Endless full training batches, each cut to its bucket's width; a function of (seed,
  step) like `finetune.data.train_batches`."""
  lengths = row_lengths(features)
  for take, width in bucketed_batch_indices(lengths, batch_size, buckets, seed, start_step):
    yield trim({k: v[take] for k, v in features.items()}, width)


# ----------------------------------------------------------------------------- evaluation


class EvalBatch(NamedTuple):
  rows: np.ndarray  # [batch] indices into the set, the last batch padded with its own rows
  real: int  # how many of them are real (the rest are repeats with weight 0)
  width: int  # the padded length


def eval_batch_plan(
  lengths: np.ndarray, batch_size: int, buckets: Sequence[int]
) -> list[EvalBatch]:
  """Rows sorted by length (stable), cut into batches of `batch_size`, each padded to the bucket
  of its longest row; the last batch filled up with repeats of its first row."""
  order = np.argsort(lengths, kind="stable")
  plan = []
  for start in range(0, len(order), batch_size):
    rows = order[start : start + batch_size]
    real = len(rows)
    width = bucket_width(int(lengths[rows].max()), buckets)
    if real < batch_size:
      rows = np.concatenate([rows, np.full(batch_size - real, rows[0], rows.dtype)])
    plan.append(EvalBatch(rows, real, width))
  return plan


def pad_outputs(
  outputs: dict[str, np.ndarray], keys: Sequence[str], full_width: int, fill: float
) -> dict[str, np.ndarray]:
  """Per-position outputs [batch, width, ...] of `keys` padded back to `full_width` with
  `fill` (the other outputs are per row and kept)."""
  out = dict(outputs)
  for key in keys:
    value = outputs[key]
    missing = full_width - value.shape[1]
    if missing > 0:
      pad = [(0, 0), (0, missing)] + [(0, 0)] * (value.ndim - 2)
      out[key] = np.pad(value, pad, constant_values=fill)
  return out


class CompileCounter:
  """The distinct input shapes each jitted function was called with: jit compiles once per
  shape, so this is the number of compilations a run did (reported in the log and metrics)."""

  def __init__(self):
    self.shapes: dict[str, set[tuple[int, ...]]] = {}

  def record(self, name: str, batch: Features) -> None:
    self.shapes.setdefault(name, set()).add(tuple(batch["input_ids"].shape))

  def counts(self) -> dict[str, int]:
    return {f"compiles/{name}": len(shapes) for name, shapes in sorted(self.shapes.items())}

  def describe(self) -> str:
    return ", ".join(
      f"{name} {len(s)} ({', '.join(str(shape[-1]) for shape in sorted(s))})"
      for name, s in sorted(self.shapes.items())
    )
