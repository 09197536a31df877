"""CLUE classification: AFQMC, TNEWS, IFLYTEK, CMNLI, OCNLI, CSL, CLUEWSC2020 (accuracy).

Data: the task's folder as CLUE distributes it (`--config.data_dir=afqmc_public`): train.json,
dev.json and test.json, one JSON object per line, read by field name as CLUE's baselines
(CLUEbenchmark/CLUE baselines/models/classifier_utils.py) read them:

  afqmc    sentence1, sentence2 -> label "0" | "1"
  tnews    sentence -> label "100".."116" (15 classes: no 105, no 111)
  iflytek  sentence -> label "0".."118"
  cmnli    sentence1, sentence2 -> contradiction | entailment | neutral ("-" rows dropped)
  ocnli    sentence1, sentence2 -> as cmnli
  csl      keyword (a list, joined by spaces), abst -> label "0" | "1"
  wsc      text with span1 (the candidate) marked _..._ and span2 (the pronoun) [...] at their
           character indices -> label "true" | "false"

Everything else is GLUE's machinery (`GlueTask`: features, truncation, scoring, dev predictions
TSV); test-set predictions are written in CLUE's submission format, `<task>_predict.json` with one
{"id": ..., "label": ...} per line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from etils import epath

from finetune.data import DataError, atomic_open, read_text, text_lines
from finetune.tasks.glue import GlueTask
from finetune.tasks.glue_data import GlueExamples, GlueSpec, Split

_NLI = ("contradiction", "entailment", "neutral")  # CLUE's label order for CMNLI / OCNLI


def _fields(*names: str) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
  def texts(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[n]) for n in names)

  return texts


def _csl_texts(row: Mapping[str, Any]) -> tuple[str, ...]:
  keywords = row["keyword"]
  if not isinstance(keywords, list):
    raise ValueError(f"'keyword' is {type(keywords).__name__}, expected a list")
  return " ".join(str(k) for k in keywords), str(row["abst"])


def mark_wsc_spans(text: str, target: Mapping[str, Any]) -> str:
  """CLUEWSC2020's input: the candidate (span1) between underscores, the pronoun (span2) in
  brackets, at their character indices (as CLUE's WSCProcessor inserts them)."""
  spans = []
  for key, left, right in (("span1", "_", "_"), ("span2", "[", "]")):
    span, start = str(target[f"{key}_text"]), int(target[f"{key}_index"])
    if text[start : start + len(span)] != span:
      raise ValueError(
        f"{key}_text {span!r} is not at {key}_index {start} (found "
        f"{text[start : start + len(span)]!r})"
      )
    spans.append((start, start + len(span), left, right))
  (s1, e1, l1, r1), (s2, e2, l2, r2) = sorted(spans)
  if s2 < e1:
    raise ValueError(f"span1 and span2 overlap in {text!r}")
  return text[:s1] + l1 + text[s1:e1] + r1 + text[e1:s2] + l2 + text[s2:e2] + r2 + text[e2:]


def _wsc_texts(row: Mapping[str, Any]) -> tuple[str, ...]:
  return (mark_wsc_spans(str(row["text"]), row["target"]),)


@dataclasses.dataclass(frozen=True)
class ClueSpec:
  name: str
  fields: tuple[str, ...]  # the JSON fields the texts come from
  texts: Callable[[Mapping[str, Any]], tuple[str, ...]]  # one JSON row -> its num_texts texts
  num_texts: int
  labels: tuple[str, ...]
  skip_labels: tuple[str, ...] = ()  # rows with these labels are dropped (NLI's "-")


def _plain(name: str, fields: tuple[str, ...], labels, skip=()) -> ClueSpec:
  return ClueSpec(name, fields, _fields(*fields), len(fields), tuple(labels), skip)


_PAIR = ("sentence1", "sentence2")
TASKS: dict[str, ClueSpec] = {
  "afqmc": _plain("afqmc", _PAIR, ("0", "1")),
  "tnews": _plain("tnews", ("sentence",), (str(100 + i) for i in range(17) if i not in (5, 11))),
  "iflytek": _plain("iflytek", ("sentence",), (str(i) for i in range(119))),
  "cmnli": _plain("cmnli", _PAIR, _NLI, ("-",)),
  "ocnli": _plain("ocnli", _PAIR, _NLI, ("-",)),
  "csl": ClueSpec("csl", ("keyword", "abst"), _csl_texts, 2, ("0", "1")),
  "wsc": ClueSpec("wsc", ("text", "target"), _wsc_texts, 1, ("true", "false")),
}
ALIASES = {"cluewsc2020": "wsc", "cluewsc": "wsc"}


def read_clue_file(spec: ClueSpec, path: str, labeled: bool) -> GlueExamples:
  """Read one CLUE JSON-lines file; errors name the file and line."""
  lines = text_lines(read_text(path, "CLUE"))
  texts: tuple[list[str], ...] = tuple([] for _ in range(spec.num_texts))
  labels, ids = [], []
  with lines as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(path, number, f"not a JSON object: {e.msg}") from None
      if not isinstance(row, dict):
        raise DataError(path, number, f"expected a JSON object, got {type(row).__name__}")
      if labeled:
        if "label" not in row:
          raise DataError(path, number, f"no 'label' field (fields: {sorted(row)})")
        label = str(row["label"]).strip()
        if label in spec.skip_labels:
          continue
        if label not in spec.labels:
          shown = list(spec.labels) if len(spec.labels) <= 20 else f"{len(spec.labels)} labels"
          raise DataError(path, number, f"label {label!r} is not one of {shown} for {spec.name}")
        labels.append(spec.labels.index(label))
      try:
        row_texts = spec.texts(row)
      except KeyError as e:
        raise DataError(
          path, number, f"no {e.args[0]!r} field for {spec.name} (needs {list(spec.fields)})"
        ) from None
      except (ValueError, TypeError) as e:
        raise DataError(path, number, str(e)) from None
      for column, text in zip(texts, row_texts):
        column.append(text)
      ids.append(str(row.get("id", row.get("idx", len(ids)))))
  label_array = np.asarray(labels, np.int32) if labeled else None
  return GlueExamples(texts, label_array, ids, path)


class ClueTask(GlueTask):
  """A CLUE classification task (config.task); AlbertForSequenceClassification."""

  def __init__(self, config, tokenizer):
    task = ALIASES.get(config.task, config.task)
    if task not in TASKS:
      raise ValueError(f"unknown CLUE task {config.task!r}; choose one of {sorted(TASKS)}")
    self.config, self.tokenizer = config, tokenizer
    self.clue = TASKS[task]
    # The GLUE machinery reads its settings from a GlueSpec: the same task in its terms.
    self.spec = GlueSpec(
      name=task,
      text_columns=self.clue.fields,
      label_column="label",
      labels=self.clue.labels,
      tfds_text=(),
      tfds_labels=None,
      metrics=("accuracy",),
      best="dev/accuracy",
      dev=(Split("dev", "dev.json", ""),),
      test=(Split("test", "test.json", "", f"{task}_predict"),),
    )

  def _read(self, split: Split, labeled: bool, spec_task: str | None = None):
    if not self.config.get("data_dir"):
      raise ValueError(
        "CLUE tasks read the files CLUE distributes: set --config.data_dir to the task's "
        "folder (train.json, dev.json, test.json)"
      )
    path = self.data_path(split.file)
    if not labeled and not epath.Path(path).is_file():
      return None
    return read_clue_file(self.clue, path, labeled)

  def train_features(self):
    train = Split("train", "train.json", "")
    return self._features(self._limited(self._read(train, labeled=True), "train"))

  def write_predictions(self, eval_set, predictions, directory: str) -> list[str]:
    if eval_set.labeled:
      return super().write_predictions(eval_set, predictions, directory)
    split, examples = eval_set.meta
    path = str(epath.Path(directory) / f"{split.submission}.json")
    with atomic_open(path) as f:
      for i, value in zip(examples.ids, predictions.values):
        row: dict[str, Any] = {"id": int(i) if i.isdigit() else i, "label": self._label_text(value)}
        if self.clue.name == "tnews":
          row["label_desc"] = ""  # CLUE's tnews submission carries the field
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return [path]
