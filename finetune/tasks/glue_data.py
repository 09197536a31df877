"""GLUE's data: each task's files, columns, labels and metrics (`TASKS`), and the readers of its
TSV files (`read_glue_file`) and of tensorflow-datasets `glue/<task>` (`read_glue_tfds`); the task
itself is `finetune.tasks.glue.GlueTask`.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from finetune.data import DataError, read_text
from finetune.tasks.base import load_tfds

log = logging.getLogger(__name__)

_BINARY = ("0", "1")
_NLI3 = ("contradiction", "entailment", "neutral")  # the original run_classifier's MNLI order
_NLI2 = ("entailment", "not_entailment")


@dataclasses.dataclass(frozen=True)
class Split:
  name: str  # our name: "dev", "dev_matched", "test_matched", ...
  file: str  # TSV file in data_dir
  tfds_split: str
  submission: str | None = None  # GLUE submission file stem for unlabeled test sets


@dataclasses.dataclass(frozen=True)
class GlueSpec:
  name: str
  text_columns: tuple[str, ...]  # header names in the TSVs
  label_column: str
  labels: tuple[str, ...] | None  # None: regression (STS-B)
  tfds_text: tuple[str, ...]
  tfds_labels: tuple[str, ...] | None  # tfds ClassLabel index -> our label name
  metrics: tuple[str, ...]
  best: str
  dev: tuple[Split, ...]
  test: tuple[Split, ...]
  headerless_columns: tuple[str, ...] | None = None  # train/dev files without a header (CoLA)
  test_index_column: str = "index"


def _std_splits(submission: str) -> tuple[tuple[Split, ...], tuple[Split, ...]]:
  return (Split("dev", "dev.tsv", "validation"),), (Split("test", "test.tsv", "test", submission),)


TASKS: dict[str, GlueSpec] = {
  "cola": GlueSpec(
    "cola",
    ("sentence",),
    "label",
    _BINARY,
    ("sentence",),
    _BINARY,
    ("mcc",),
    "dev/mcc",
    *_std_splits("CoLA"),
    headerless_columns=("source", "label", "original_label", "sentence"),
  ),
  "sst2": GlueSpec(
    "sst2",
    ("sentence",),
    "label",
    _BINARY,
    ("sentence",),
    _BINARY,
    ("accuracy",),
    "dev/accuracy",
    *_std_splits("SST-2"),
  ),
  "mrpc": GlueSpec(
    "mrpc",
    ("#1 String", "#2 String"),
    "Quality",
    _BINARY,
    ("sentence1", "sentence2"),
    _BINARY,
    ("accuracy", "f1"),
    "dev/accuracy",
    *_std_splits("MRPC"),
  ),
  "qqp": GlueSpec(
    "qqp",
    ("question1", "question2"),
    "is_duplicate",
    _BINARY,
    ("question1", "question2"),
    _BINARY,
    ("accuracy", "f1"),
    "dev/accuracy",
    *_std_splits("QQP"),
    test_index_column="id",
  ),
  "stsb": GlueSpec(
    "stsb",
    ("sentence1", "sentence2"),
    "score",
    None,
    ("sentence1", "sentence2"),
    None,
    ("pearson", "spearman"),
    "dev/pearson",
    *_std_splits("STS-B"),
  ),
  "mnli": GlueSpec(
    "mnli",
    ("sentence1", "sentence2"),
    "gold_label",
    _NLI3,
    ("premise", "hypothesis"),
    ("entailment", "neutral", "contradiction"),
    ("accuracy",),
    "dev_matched/accuracy",
    (
      Split("dev_matched", "dev_matched.tsv", "validation_matched"),
      Split("dev_mismatched", "dev_mismatched.tsv", "validation_mismatched"),
    ),
    (
      Split("test_matched", "test_matched.tsv", "test_matched", "MNLI-m"),
      Split("test_mismatched", "test_mismatched.tsv", "test_mismatched", "MNLI-mm"),
    ),
  ),
  "qnli": GlueSpec(
    "qnli",
    ("question", "sentence"),
    "label",
    _NLI2,
    ("question", "sentence"),
    _NLI2,
    ("accuracy",),
    "dev/accuracy",
    *_std_splits("QNLI"),
  ),
  "rte": GlueSpec(
    "rte",
    ("sentence1", "sentence2"),
    "label",
    _NLI2,
    ("sentence1", "sentence2"),
    _NLI2,
    ("accuracy",),
    "dev/accuracy",
    *_std_splits("RTE"),
  ),
  "wnli": GlueSpec(
    "wnli",
    ("sentence1", "sentence2"),
    "label",
    _BINARY,
    ("sentence1", "sentence2"),
    _BINARY,
    ("accuracy",),
    "dev/accuracy",
    *_std_splits("WNLI"),
  ),
}
# AX, the diagnostic set: MNLI's inputs and labels, predicted by the MNLI model.
AX = Split("ax", "diagnostic.tsv", "test", "AX")


@dataclasses.dataclass
class GlueExamples:
  texts: tuple[list[str], ...]  # one list per text column
  labels: np.ndarray | None  # int32 class ids or float32 scores [N]; None when unlabeled
  ids: list[str]  # the index column (or the row number)
  source: str  # file or tfds name, for messages


# --------------------------------------------------------------------- TSV reading


def read_tsv(path: str) -> list[tuple[int, list[str]]]:
  """(1-based line number, fields) of every non-empty line. GLUE files are not quoted: fields
  are split on tabs only (csv.QUOTE_NONE), and lines on "\\n" only."""
  text = read_text(path, "GLUE")
  rows = []
  for number, line in enumerate(text.split("\n"), start=1):
    line = line.rstrip("\r")
    if line.strip():
      rows.append((number, line.split("\t")))
  return rows


def _parse_label(spec: GlueSpec, value: str, path: str, line: int) -> float | int:
  value = value.strip()
  if spec.labels is None:
    try:
      score = float(value)
    except ValueError:
      raise DataError(path, line, f"score {value!r} is not a number") from None
    if not 0.0 <= score <= 5.0:
      raise DataError(path, line, f"score {score} is outside STS-B's range [0, 5]")
    return score
  if value not in spec.labels:
    raise DataError(
      path, line, f"label {value!r} is not one of {list(spec.labels)} for {spec.name}"
    )
  return spec.labels.index(value)


def read_glue_file(
  spec: GlueSpec,
  path: str,
  labeled: bool,
  text_columns=None,
  index_column: str | None = None,
  skip_malformed: bool = False,
) -> GlueExamples:
  """Read one GLUE TSV; errors name the file and line.

  skip_malformed: drop (and count in a log line) rows with missing columns or a bad label
  instead of failing, as the original run_classifier does for QQP's few broken rows.
  """
  rows = read_tsv(path)
  text_columns = text_columns or spec.text_columns
  headerless = (
    spec.headerless_columns is not None
    and labeled
    and not (rows and rows[0][1] and rows[0][1][0] in ("index", "id"))
  )
  if headerless:
    columns, body = list(spec.headerless_columns), rows
  else:
    if not rows:
      raise DataError(path, 1, "empty file (expected a header line)")
    columns, body = [c.strip() for c in rows[0][1]], rows[1:]
  wanted = list(text_columns) + ([spec.label_column] if labeled else [])
  missing = [c for c in wanted if c not in columns]
  if missing:
    raise DataError(path, 1, f"no column {missing} for {spec.name}; the columns are {columns}")
  where = [columns.index(c) for c in wanted]
  index_at = columns.index(index_column) if index_column and index_column in columns else None
  texts: tuple[list[str], ...] = tuple([] for _ in text_columns)
  labels, ids, skipped = [], [], []
  for line, fields in body:
    try:
      if len(fields) <= max(where):
        raise DataError(
          path,
          line,
          f"{len(fields)} columns, expected at least "
          f"{max(where) + 1} ({wanted[int(np.argmax(where))]!r} is column "
          f"{max(where) + 1})",
        )
      label = _parse_label(spec, fields[where[-1]], path, line) if labeled else None
    except DataError as e:
      if not skip_malformed:
        raise DataError(
          e.path, e.line, e.problem + " (--config.skip_malformed_rows=True drops such rows)"
        ) from None
      skipped.append(line)
      continue
    for i, col in enumerate(where[: len(text_columns)]):
      texts[i].append(fields[col])
    if labeled:
      labels.append(label)
    ids.append(fields[index_at] if index_at is not None else str(len(ids)))
  if skipped:
    log.warning(
      "%s: skipped %d malformed rows (lines %s%s)",
      path,
      len(skipped),
      skipped[:10],
      "..." if len(skipped) > 10 else "",
    )
  label_array = None
  if labeled:
    label_array = np.asarray(labels, np.float32 if spec.labels is None else np.int32)
  return GlueExamples(texts, label_array, ids, path)


# --------------------------------------------------------------------- tfds


def read_glue_tfds(
  spec: GlueSpec, config, split: str, tfds_task: str | None = None, labeled: bool = True
) -> GlueExamples:
  name = f"glue/{tfds_task or spec.name}"
  rows = load_tfds(name, split, config)
  text_features = spec.tfds_text if tfds_task != "ax" else ("premise", "hypothesis")
  texts = tuple([r[f] for r in rows] for f in text_features)
  labels = None
  if labeled:
    raw = [r["label"] for r in rows]
    if spec.labels is None:
      labels = np.asarray(raw, np.float32)
    else:
      bad = [x for x in raw if not 0 <= int(x) < len(spec.tfds_labels)]
      if bad:
        raise DataError(
          f"{name}[{split}]",
          None,
          f"labels {sorted(set(bad))[:5]} outside {list(spec.tfds_labels)} (an unlabeled split?)",
        )
      labels = np.asarray([spec.labels.index(spec.tfds_labels[int(x)]) for x in raw], np.int32)
  ids = [str(r.get("idx", i)) for i, r in enumerate(rows)]
  return GlueExamples(texts, labels, ids, f"{name}[{split}]")
