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
from finetune.data import encode_pairs, write_tsv
from finetune.tasks.base import EvalSet, Task, use_tfds
from finetune.tasks.glue_data import (
  AX,
  TASKS,
  GlueExamples,
  Split,
  read_glue_file,
  read_glue_tfds,
)

log = logging.getLogger(__name__)


class GluePredictions(NamedTuple):
  """What `GlueTask.score` predicts for a set of n examples."""

  values: np.ndarray  # [n] label ids, or scores for STS-B
  probabilities: np.ndarray | None  # [n, labels] softmax of the logits; None for STS-B


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
