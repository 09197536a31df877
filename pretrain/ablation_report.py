"""The ALBERT paper's ablations (Lan et al. 2019, Tables 3-5): their variants, the paper's own
figures, and the markdown table and plot `python -m pretrain.ablations` writes.

    Table 3  E in {64, 128, 256, 768} x {not-shared, all-shared}    (sentence loss SOP)
    Table 4  {all-shared, shared-attention, shared-FFN, not-shared} x E in {768, 128}   (SOP)
    Table 5  sentence loss {none, NSP, SOP}                         (all-shared, E = 128)

A variant is (cross_layer_sharing, embedding_size, sentence_loss); a variant that appears in
several tables (all-shared E=128 SOP is in all three) is trained once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from albert_flax.paper import PAPER_PARAMETERS

TABLES = ("3", "4", "5")
PAPER_EMBEDDING_SIZES = (64, 128, 256, 768)
SHARING_NAMES = {
  "all": "all-shared",
  "attention": "shared-attention",
  "ffn": "shared-FFN",
  "none": "not-shared",
}
LOSS_NAMES = {"none": "None", "nsp": "NSP", "sop": "SOP"}


@dataclasses.dataclass(frozen=True)
class Variant:
  """One pretraining run of the ablations."""

  sharing: str  # AlbertConfig.cross_layer_sharing
  embedding_size: int  # E
  sentence_loss: str  # pretraining config.sentence_loss

  @property
  def name(self) -> str:
    """The sub-workdir's name, e.g. "all-E128-sop"."""
    return f"{self.sharing}-E{self.embedding_size}-{self.sentence_loss}"


def table_variants(
  table: str, embedding_sizes: Sequence[int] = PAPER_EMBEDDING_SIZES
) -> list[tuple[str, Variant, Variant | None]]:
  """(row label, our variant, the paper's variant it stands for or None), in the paper's row order.

  `embedding_sizes` replaces the paper's E values of Table 3 (the i-th given E stands for the
  paper's i-th when four are given); Table 4 takes the largest and 128 (else the second
  smallest) given, standing for the paper's 768 and 128; Table 5 the latter.
  """
  sizes = tuple(embedding_sizes)
  small = 128 if 128 in sizes else sorted(sizes)[min(1, len(sizes) - 1)]
  large = max(sizes)
  as_paper = dict(zip(sizes, PAPER_EMBEDDING_SIZES)) if len(sizes) == 4 else {}
  as_paper.update({large: 768, small: 128})
  if table == "3":
    return [
      (f"{SHARING_NAMES[s]} E={e}", Variant(s, e, "sop"), _paper(s, as_paper.get(e), "sop"))
      for s in ("none", "all")
      for e in sizes
    ]
  if table == "4":
    return [
      (f"E={e} {SHARING_NAMES[s]}", Variant(s, e, "sop"), _paper(s, as_paper[e], "sop"))
      for e in (large, small)
      for s in ("all", "attention", "ffn", "none")
    ]
  if table == "5":
    return [
      (LOSS_NAMES[loss], Variant("all", small, loss), Variant("all", 128, loss))
      for loss in ("none", "nsp", "sop")
    ]
  raise ValueError(f"table must be one of {TABLES}, got {table!r}")


def _paper(sharing: str, embedding_size: int | None, loss: str) -> Variant | None:
  return None if embedding_size is None else Variant(sharing, embedding_size, loss)


# ------------------------------------------------------------------------------ the paper

# The paper's downstream columns (dev sets): SQuAD as F1/EM, the others accuracy; its Avg.
PAPER_TASKS = ("SQuAD1.1", "SQuAD2.0", "MNLI", "SST-2", "RACE")


@dataclasses.dataclass(frozen=True)
class PaperRow:
  """A row of the paper (ALBERT-base, L=12, H=768); None where the paper has no figure or the
  figure is not recorded here (Tables 3 and 4: the Avg column only)."""

  mlm: float | None = None
  nsp: float | None = None
  sop: float | None = None
  tasks: Mapping[str, str] = dataclasses.field(default_factory=dict)
  avg: float | None = None


_T5_NONE = dict(zip(PAPER_TASKS, ("88.6/81.5", "78.1/75.3", "81.5", "89.9", "61.7")))
_T5_NSP = dict(zip(PAPER_TASKS, ("88.4/81.5", "77.2/74.6", "81.6", "91.1", "62.3")))
_T5_SOP = dict(zip(PAPER_TASKS, ("89.3/82.3", "80.0/77.1", "82.0", "90.3", "64.0")))

# (table, sharing, E, sentence loss) -> the paper's row.
PAPER: dict[tuple[str, str, int, str], PaperRow] = {
  ("5", "all", 128, "none"): PaperRow(54.9, 52.4, 53.3, _T5_NONE, 79.0),
  ("5", "all", 128, "nsp"): PaperRow(54.5, 90.5, 52.0, _T5_NSP, 79.2),
  ("5", "all", 128, "sop"): PaperRow(54.0, 78.9, 86.5, _T5_SOP, 80.1),
  ("3", "none", 64, "sop"): PaperRow(avg=81.3),
  ("3", "none", 128, "sop"): PaperRow(avg=81.7),
  ("3", "none", 256, "sop"): PaperRow(avg=81.8),
  ("3", "none", 768, "sop"): PaperRow(avg=82.3),
  ("3", "all", 64, "sop"): PaperRow(avg=79.0),
  ("3", "all", 128, "sop"): PaperRow(tasks=_T5_SOP, avg=80.1),  # = Table 5's SOP row
  ("3", "all", 256, "sop"): PaperRow(avg=79.6),
  ("3", "all", 768, "sop"): PaperRow(avg=79.8),
  ("4", "all", 768, "sop"): PaperRow(avg=79.8),
  ("4", "attention", 768, "sop"): PaperRow(avg=81.6),
  ("4", "ffn", 768, "sop"): PaperRow(avg=79.5),
  ("4", "none", 768, "sop"): PaperRow(avg=82.3),
  ("4", "all", 128, "sop"): PaperRow(tasks=_T5_SOP, avg=80.1),
  ("4", "attention", 128, "sop"): PaperRow(avg=81.7),
  ("4", "ffn", 128, "sop"): PaperRow(avg=80.2),
  ("4", "none", 128, "sop"): PaperRow(avg=81.6),
}


def paper_row(table: str, variant: Variant | None) -> PaperRow | None:
  """The paper's row of `variant` (one of its own) in `table`, if it has one."""
  if variant is None:
    return None
  return PAPER.get((table, variant.sharing, variant.embedding_size, variant.sentence_loss))


# ------------------------------------------------------------------------------ our figures


def _fmt(value: Any, digits: int = 1) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "—"
  if isinstance(value, str):
    return value
  return f"{value:.{digits}f}"


def _params(n: int | None) -> str:
  if n is None:
    return "—"
  return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}K"


def format_table(
  table: str,
  rows: Sequence[tuple[str, Variant | None, Mapping[str, Any]]],
  task_columns: Sequence[str],
) -> str:
  """A markdown table: for each variant our row, then the paper's row beneath it.

  Args:
    rows: (label, the paper's variant the row stands for, our result); the result holds
      "params" (int), "mlm", "nsp", "sop" (percent), "tasks" {column: percent or "F1/EM"
      string}, "avg" (percent).
    task_columns: our downstream columns (the paper's when its data was given, else the
      built-in tasks); the paper's rows fill the paper's columns only.
  """
  columns = list(task_columns) + [c for c in PAPER_TASKS if c not in task_columns]
  header = ["Model", "", "Parameters", "MLM", "NSP", "SOP", *columns, "Avg"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for label, paper_variant, result in rows:
    tasks = result.get("tasks", {})
    if result.get("not_run"):
      label += " (not run)"
    lines.append(
      "| "
      + " | ".join(
        [
          label,
          "ours",
          _params(result.get("params")),
          _fmt(result.get("mlm")),
          _fmt(result.get("nsp")),
          _fmt(result.get("sop")),
          *(_fmt(tasks.get(c)) for c in columns),
          _fmt(result.get("avg")),
        ]
      )
      + " |"
    )
    paper = paper_row(table, paper_variant)
    if paper is not None:
      millions = paper_millions(table, paper_variant)
      lines.append(
        "| "
        + " | ".join(
          [
            "",
            "paper",
            f"{millions:g}M" if millions else "—",
            _fmt(paper.mlm),
            _fmt(paper.nsp),
            _fmt(paper.sop),
            *(_fmt(paper.tasks.get(c)) for c in columns),
            _fmt(paper.avg),
          ]
        )
        + " |"
      )
  return "\n".join(lines)


def paper_millions(table: str, variant: Variant) -> int | None:
  """The paper's parameter count (millions) of its variant: Tables 3 and 4 print one
  (albert_flax.paper); Table 5's model is ALBERT-base, all-shared, E=128 (Table 3's 12M)."""
  key_table = 3 if table == "5" else int(table)
  return PAPER_PARAMETERS.get((key_table, variant.embedding_size, variant.sharing))


def plot_mlm_curves(
  curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], path: str
) -> None:
  """A PNG of held-back MLM accuracy against the step: one panel per table, one line per
  variant ({table: {variant label: [(step, accuracy percent)]}})."""
  # matplotlib only here: an optional dependency of this one figure.
  import matplotlib

  matplotlib.use("Agg")  # files only: no display
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
  for ax, (table, lines) in zip(axes[0], curves.items()):
    for label, points in lines.items():
      if points:
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o", markersize=3, label=label)
    ax.set_title(f"Table {table}")
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("held-back MLM accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
