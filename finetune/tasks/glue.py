"""GLUE: CoLA, SST-2, MRPC, QQP, STS-B, MNLI (+ the AX diagnostic), QNLI, RTE, WNLI.

Data: the task's folder of TSV files as distributed by GLUE (`--config.data_dir=glue_data/MNLI`),
read by header name except CoLA's train/dev files, which have no header (source, label, original
judgement, sentence); or tensorflow-datasets `glue/<task>` when no data_dir is given. Test files
have no labels: their predictions are written in the GLUE submission format (CoLA.tsv,
MNLI-m.tsv, ..., AX.tsv with the MNLI model). Labeled sets are written as
`<set>_predictions.tsv`: index, prediction, gold label and, for the classification tasks, the
model's probability of each label (`p(<label>)` columns, in the task's label order), for
ensembling or threshold tuning.

Inputs are `[CLS] a [SEP] b [SEP]`, truncated longest-first as the original run_classifier does.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

import albert_flax as af
from albert_flax import paths
from albert_flax.train import losses
from finetune import metrics as metrics_lib
from finetune.data import DataError, encode_pairs, read_text, write_tsv
from finetune.tasks.base import EvalSet, Task, load_tfds, use_tfds

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


class GluePredictions(NamedTuple):
  """What `GlueTask.score` predicts for a set of n examples."""

  values: np.ndarray  # [n] label ids, or scores for STS-B
  probabilities: np.ndarray | None  # [n, labels] softmax of the logits; None for STS-B


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


# --------------------------------------------------------------------- the task


class GlueTask(Task):
  """A GLUE task (config.task); AlbertForSequenceClassification."""

  model_class = af.AlbertForSequenceClassification

  def __init__(self, config, tokenizer):
    super().__init__(config, tokenizer)
    if config.task not in TASKS:
      raise ValueError(f"unknown GLUE task {config.task!r}; choose one of {sorted(TASKS)}")
    self.spec = TASKS[config.task]

  # ------------------------------------------------------------------ model and loss
  @property
  def is_regression(self) -> bool:
    return self.spec.labels is None

  def model_overrides(self) -> dict[str, Any]:
    if self.is_regression:
      return {"num_labels": 1, "problem_type": "regression", "label_names": None}
    return {
      "num_labels": len(self.spec.labels),
      "problem_type": "single_label_classification",
      "label_names": tuple(self.spec.labels),
    }

  def stats(self, outputs, batch):
    loss = losses.sequence_classification_loss(
      outputs.logits, batch["labels"], self.model_overrides()["problem_type"], batch["weights"]
    )
    return {"loss": loss}

  def loss_weights(self, batch):
    return {"loss": jnp.sum(batch["weights"])}

  def head_outputs(self, outputs) -> dict[str, jax.Array]:
    return {"logits": outputs.logits}

  @property
  def best_metric(self) -> str:
    return self.spec.best

  # ------------------------------------------------------------------ data
  def _read(self, split: Split, labeled: bool, spec_task: str | None = None) -> GlueExamples | None:
    spec = self.spec
    if use_tfds(self.config):
      return read_glue_tfds(spec, self.config, split.tfds_split, spec_task, labeled)
    if split is AX:
      path = self._ax_path()
      if path is None:
        log.info("no AX diagnostic.tsv next to %s; AX predictions skipped", self.config.data_dir)
        return None
      return read_glue_file(
        spec, path, labeled=False, text_columns=("sentence1", "sentence2"), index_column="index"
      )
    path = self.data_path(split.file)
    if not labeled and not epath.Path(path).is_file():
      log.info("no %s; its predictions are skipped", path)
      return None
    return read_glue_file(
      spec,
      path,
      labeled,
      index_column=None if labeled else spec.test_index_column,
      skip_malformed=bool(self.config.get("skip_malformed_rows", False)),
    )

  def _ax_path(self) -> str | None:
    if self.config.get("ax_file"):
      return self.config.ax_file
    glue_dir = paths.path(self.config.data_dir).parent  # data_dir is glue_data/<TASK>
    for candidate in (
      epath.Path(self.data_path("diagnostic.tsv")),
      glue_dir / "diagnostic" / "diagnostic.tsv",
      glue_dir / "AX" / "AX.tsv",
    ):
      if candidate.is_file():
        return str(candidate)
    return None

  def _features(self, examples: GlueExamples) -> dict[str, np.ndarray]:
    encoded = [self.tokenizer.encode_as_ids(list(t)) if t else [] for t in examples.texts]
    n = len(examples.ids)
    first = encoded[0] if n else []
    second = encoded[1] if len(encoded) > 1 else None
    tok = self.tokenizer
    features = encode_pairs(
      first, second, self.config.max_seq_length, tok.cls_token_id, tok.sep_token_id
    )
    if examples.labels is not None:
      features["labels"] = examples.labels
    return features

  def _limited(self, examples: GlueExamples, kind: str) -> GlueExamples:
    keep = len(self._limit(examples.ids, kind))
    return GlueExamples(
      tuple(t[:keep] for t in examples.texts),
      None if examples.labels is None else examples.labels[:keep],
      examples.ids[:keep],
      examples.source,
    )

  def train_features(self):
    train = Split("train", "train.tsv", "train")
    examples = self._read(train, labeled=True)
    if examples is not None and not len(examples.ids) and not use_tfds(self.config):
      raise ValueError(f"{self.data_path(train.file)} holds no training examples (a header only?)")
    return self._features(self._limited(examples, "train"))

  def eval_sets(self, final: bool) -> list[EvalSet]:
    sets = []
    for split in self.spec.dev:
      examples = self._limited(self._read(split, labeled=True), "eval")
      sets.append(EvalSet(split.name, self._features(examples), True, (split, examples)))
    if final:
      tests = list(self.spec.test) + ([AX] if self.spec.name == "mnli" else [])
      for split in tests:
        examples = self._read(split, labeled=False, spec_task="ax" if split is AX else None)
        if examples is None or not examples.ids:
          continue
        examples = self._limited(examples, "eval")
        sets.append(EvalSet(split.name, self._features(examples), False, (split, examples)))
    return sets

  # ------------------------------------------------------------------ scoring
  def score(self, eval_set, outputs: Mapping[str, np.ndarray]):
    logits = np.asarray(outputs["logits"], np.float64)
    if self.is_regression:
      predicted = GluePredictions(logits[:, 0], None)
    else:
      predicted = GluePredictions(logits.argmax(-1), metrics_lib.softmax(logits))
    if not eval_set.labeled:
      return {}, predicted
    predictions = predicted.values
    labels = eval_set.features["labels"]
    out: dict[str, float] = {}
    for name in self.spec.metrics:
      if name == "accuracy":
        out["accuracy"] = metrics_lib.accuracy(predictions, labels)
      elif name == "f1":
        out["f1"] = metrics_lib.binary_f1(predictions, labels, positive=1)
      elif name == "mcc":
        out["mcc"] = metrics_lib.matthews_corrcoef(predictions, labels)
      elif name in ("pearson", "spearman"):
        out.update(metrics_lib.pearson_spearman(predictions, labels))
    return out, predicted

  def _label_text(self, value) -> str:
    if self.is_regression:
      return f"{float(value):.3f}"
    return self.spec.labels[int(value)]

  def write_predictions(self, eval_set, predictions: GluePredictions, directory: str) -> list[str]:
    split, examples = eval_set.meta
    values = [self._label_text(v) for v in predictions.values]
    if eval_set.labeled:
      path = str(epath.Path(directory) / f"{split.name}_predictions.tsv")
      header = ["index", "prediction", "label"]
      rows = [
        [i, v, self._label_text(g)]
        for i, v, g in zip(examples.ids, values, eval_set.features["labels"])
      ]
      if predictions.probabilities is not None:
        header += [f"p({label})" for label in self.spec.labels]
        rows = [
          row + [f"{p:.6f}" for p in probs] for row, probs in zip(rows, predictions.probabilities)
        ]
      write_tsv(path, header, rows)
    else:
      # The GLUE server's format: index, then the label name (a score for STS-B).
      path = str(epath.Path(directory) / f"{split.submission}.tsv")
      write_tsv(path, ["index", "prediction"], [[i, v] for i, v in zip(examples.ids, values)])
    return [path]
