"""SQuAD v1.1 and v2.0 (`--config.version`): AlbertForQuestionAnswering.

Data: `train-v{version}.json` / `dev-v{version}.json` in config.data_dir (the official files), or
tensorflow-datasets `squad/v1.1`, `squad/v2.0`.

Prediction (the original run_squad's n-best search): in every window, the `n_best_size` best
starts and ends form candidate spans that lie in the context, end after they start, span at
most `max_answer_length` tokens and start where the window gives that token its most context;
the best candidate over an example's windows is the answer, cut from the raw context by the
tokens' character spans. For v2.0 the null score is the smallest [CLS] start + end score over
the windows; a question is answered "" when null score - best span score exceeds the threshold
(config.null_score_diff_threshold, or, when unset, the official best_f1_thresh found on dev).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from etils import epath

import albert_flax as af
from albert_flax.train import losses
from albert_flax.train.batch_spec import ROWS, BatchField
from finetune import metrics as metrics_lib
from finetune import squad_metrics
from finetune.data import MODEL_INPUTS, write_json
from finetune.tasks.base import EvalSet, Task, load_tfds, use_tfds
from finetune.tasks.squad_data import SquadExample, read_squad_json, squad_features, squad_from_tfds

# No span candidate at all (every window too short): the score difference written for it.
NO_CANDIDATE_DIFF = 1e9


@dataclasses.dataclass
class SquadPredictions:
  answers: dict[str, str]  # qid -> best span text ("" only if no candidate)
  score_diffs: dict[str, float]  # qid -> null score - best span score (v2.0)
  nbest: dict[str, list[dict[str, Any]]]
  final: dict[str, str]  # after the no-answer threshold (v2.0); = answers for v1.1
  threshold: float | None = None


def _top(values: np.ndarray, k: int) -> np.ndarray:
  return np.argsort(-values, kind="stable")[:k]


def nbest_answers(
  examples: list[SquadExample],
  features: Mapping[str, np.ndarray],
  start_logits: np.ndarray,
  end_logits: np.ndarray,
  n_best_size: int,
  max_answer_length: int,
) -> tuple[dict, dict, dict]:
  """(best text, null - best score difference, n-best list) per question id.

  start_logits, end_logits: [F, S] for the F features of `examples` (`squad_features` order).
  """
  by_example: dict[int, list[int]] = {}
  for f, e in enumerate(features["example_index"]):
    by_example.setdefault(int(e), []).append(f)
  answers, diffs, nbest = {}, {}, {}
  for index, example in enumerate(examples):
    candidates = []
    null_score = np.inf
    for f in by_example.get(index, []):
      start, end = start_logits[f], end_logits[f]
      spans, best_context = features["char_spans"][f], features["max_context"][f]
      null_score = min(null_score, float(start[0] + end[0]))
      for s in _top(start, n_best_size):
        if spans[s, 0] < 0 or not best_context[s]:
          continue
        for e in _top(end, n_best_size):
          if spans[e, 0] < 0 or e < s or e - s + 1 > max_answer_length:
            continue
          text = example.context[spans[s, 0] : spans[e, 1]].strip()
          if text:
            candidates.append((float(start[s] + end[e]), text, float(start[s]), float(end[e])))
    candidates.sort(key=lambda c: -c[0])
    seen, top = set(), []
    for score, text, s_logit, e_logit in candidates:
      if text not in seen:  # the same text from two windows counts once
        seen.add(text)
        top.append({"text": text, "score": score, "start_logit": s_logit, "end_logit": e_logit})
      if len(top) == n_best_size:
        break
    if top:
      probs = metrics_lib.softmax([c["score"] for c in top])
      for c, p in zip(top, probs):
        c["probability"] = float(p)
    answers[example.qid] = top[0]["text"] if top else ""
    diffs[example.qid] = (null_score - top[0]["score"]) if top else NO_CANDIDATE_DIFF
    nbest[example.qid] = top
  return answers, diffs, nbest


class SquadTask(Task):
  """SQuAD v1.1 / v2.0 question answering."""

  model_class = af.AlbertForQuestionAnswering
  sequence_outputs = ("start_logits", "end_logits")

  def __init__(self, config, tokenizer):
    super().__init__(config, tokenizer)
    if config.version not in ("1.1", "2.0"):
      raise ValueError(f"SQuAD version must be '1.1' or '2.0', got {config.version!r}")
    self.v2 = config.version == "2.0"
    self._threshold: float | None = None

  # ------------------------------------------------------------------ model and loss
  def model_overrides(self):
    return {}

  def target_spec(self, batch_size, seq_len):
    positions = BatchField((batch_size,), np.int32, (ROWS,))  # token index of the answer's ends
    return {"start_positions": positions, "end_positions": positions}

  def stats(self, outputs, batch):
    start, end = losses.span_loss(
      outputs.start_logits,
      outputs.end_logits,
      batch["start_positions"],
      batch["end_positions"],
      batch["weights"],
    )
    return {"start_loss": start, "end_loss": end}

  def loss_weights(self, batch):
    # (mean start CE + mean end CE) / 2: each term's denominator is twice its count; as in
    # transformers, a position clamped to the sequence length is not counted.
    seq = batch["input_ids"].shape[-1]

    def count(positions):
      counted = jnp.clip(positions, 0, seq) != seq
      return 2.0 * jnp.sum(counted * batch["weights"])

    return {
      "start_loss": count(batch["start_positions"]),
      "end_loss": count(batch["end_positions"]),
    }

  def head_outputs(self, outputs):
    return {"start_logits": outputs.start_logits, "end_logits": outputs.end_logits}

  @property
  def best_metric(self) -> str:
    return "dev/f1"

  # ------------------------------------------------------------------ data
  def _examples(self, split: str) -> list[SquadExample]:
    if use_tfds(self.config):
      name = f"squad/v{self.config.version}"
      tfds_split = "train" if split == "train" else "validation"
      return squad_from_tfds(load_tfds(name, tfds_split, self.config), f"{name}[{tfds_split}]")
    return read_squad_json(
      self.data_path(f"{split}-v{self.config.version}.json"), self.config.version
    )

  def _features(self, examples, training):
    c = self.config
    return squad_features(
      examples, self.tokenizer, c.max_seq_length, c.doc_stride, c.max_query_length, training
    )

  def train_features(self):
    features = self._features(self._limit(self._examples("train"), "train"), training=True)
    return {k: features[k] for k in MODEL_INPUTS + ("start_positions", "end_positions")}

  def eval_sets(self, final: bool) -> list[EvalSet]:
    examples = self._limit(self._examples("dev"), "eval")
    return [EvalSet("dev", self._features(examples, training=False), True, examples)]

  # ------------------------------------------------------------------ scoring
  def best_answers(self, eval_set, outputs) -> tuple[dict, dict, dict, dict]:
    """(answers, score differences, n-best lists, gold answer texts) by question id."""
    c = self.config
    examples = eval_set.meta
    answers, diffs, nbest = nbest_answers(
      examples,
      eval_set.features,
      np.asarray(outputs["start_logits"]),
      np.asarray(outputs["end_logits"]),
      c.n_best_size,
      c.max_answer_length,
    )
    golds = {e.qid: [text for text, _ in e.answers] for e in examples}
    return answers, diffs, nbest, golds

  def score(self, eval_set, outputs):
    c = self.config
    answers, diffs, nbest, golds = self.best_answers(eval_set, outputs)
    if not self.v2:
      return squad_metrics.evaluate_v1(golds, answers), SquadPredictions(
        answers, diffs, nbest, answers
      )
    raw = squad_metrics.evaluate_v2(golds, answers, na_probs=diffs)
    threshold = c.get("null_score_diff_threshold")
    if threshold is None:
      threshold = raw["best_f1_thresh"]
    final = {q: ("" if diffs[q] > threshold else a) for q, a in answers.items()}
    result = squad_metrics.evaluate_v2(golds, final)
    result.update(
      {k: raw[k] for k in ("best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")}
    )
    result["null_score_diff_threshold"] = float(threshold)
    return result, SquadPredictions(answers, diffs, nbest, final, float(threshold))

  def write_predictions(self, eval_set, predictions: SquadPredictions, directory: str):
    paths = [
      str(epath.Path(directory) / "predictions.json"),
      str(epath.Path(directory) / "nbest_predictions.json"),
    ]
    # The official format: question id -> answer text ("" = no answer).
    write_json(paths[0], predictions.final)
    write_json(paths[1], predictions.nbest)
    if self.v2:
      paths.append(str(epath.Path(directory) / "null_odds.json"))
      write_json(paths[2], predictions.score_diffs)
    return paths
