"""Evaluation metrics of the fine-tuning tasks (SQuAD's live in `squad_metrics.py`).

Classification: accuracy, binary F1 (MRPC, QQP), Matthews correlation (CoLA), Pearson and
Spearman correlation (STS-B; scipy). Token classification: entity-level precision / recall / F1
with CoNLL's chunking rules (as conlleval and seqeval's default mode): a chunk ends where the next
tag starts a new one, so IOB1 ("I-PER I-PER B-PER") and IOB2 ("B-PER I-PER") both parse, and an
entity counts only when its type and both boundaries match the gold one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def softmax(scores, axis: int = -1) -> np.ndarray:
  """Probabilities from scores along `axis` (e.g. logits [examples, classes]), in float64,
  shifted by the maximum so large scores do not overflow."""
  scores = np.asarray(scores, np.float64)
  exp = np.exp(scores - scores.max(axis=axis, keepdims=True))
  return exp / exp.sum(axis=axis, keepdims=True)


def _as_1d(name: str, values) -> np.ndarray:
  arr = np.asarray(values)
  if arr.ndim != 1:
    raise ValueError(f"{name} must be 1-D [examples], got shape {arr.shape}")
  return arr


def _pair(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
  p, y = _as_1d("predictions", predictions), _as_1d("labels", labels)
  if p.shape != y.shape:
    raise ValueError(f"{p.shape[0]} predictions for {y.shape[0]} labels")
  if p.size == 0:
    raise ValueError("no examples to score")
  return p, y


def accuracy(predictions: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
  """Fraction of exact matches (0..1)."""
  p, y = _pair(predictions, labels)
  return float(np.mean(p == y))


def binary_f1(predictions, labels, positive: int = 1) -> float:
  """F1 of the positive class (0..1); 0 when there is no true positive."""
  p, y = _pair(predictions, labels)
  tp = float(np.sum((p == positive) & (y == positive)))
  fp = float(np.sum((p == positive) & (y != positive)))
  fn = float(np.sum((p != positive) & (y == positive)))
  return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(predictions, labels) -> float:
  """Matthews correlation of two binary labelings (-1..1); 0 when a marginal is constant
  (the convention of sklearn and of GLUE's CoLA scorer)."""
  p, y = _pair(predictions, labels)
  p, y = p.astype(bool), y.astype(bool)
  tp = float(np.sum(p & y))
  tn = float(np.sum(~p & ~y))
  fp = float(np.sum(p & ~y))
  fn = float(np.sum(~p & y))
  denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return 0.0 if denominator == 0 else float((tp * tn - fp * fn) / denominator)


def pearson_spearman(predictions, labels) -> dict[str, float]:
  """{"pearson", "spearman"} correlations of float predictions with float labels."""
  p, y = _pair(predictions, labels)
  p, y = p.astype(np.float64), y.astype(np.float64)
  if p.size < 2 or np.all(p == p[0]) or np.all(y == y[0]):
    # A constant side has no correlation; scipy would warn and answer nan.
    return {"pearson": 0.0, "spearman": 0.0}
  import scipy.stats  # here: importing scipy takes seconds, and only STS-B needs it

  return {
    "pearson": float(scipy.stats.pearsonr(p, y)[0]),
    "spearman": float(scipy.stats.spearmanr(p, y)[0]),
  }


# --------------------------------------------------------------------- entity-level F1


def _split_tag(tag: str) -> tuple[str, str]:
  """ "B-PER" -> ("B", "PER"); "O" -> ("O", ""). Also accepts E-/S- (IOBES) and "PER" alone (I)."""
  if tag in ("O", ""):
    return "O", ""
  if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIES":
    return tag[0], tag[2:]
  return "I", tag


def _chunk_ends(prev_prefix: str, prefix: str, prev_type: str, type_: str) -> bool:
  # conlleval's endOfChunk.
  if prev_prefix in ("E", "S"):
    return True
  if prev_prefix in ("B", "I") and prefix in ("B", "S", "O"):
    return True
  return prev_prefix != "O" and prev_type != type_


def _chunk_starts(prev_prefix: str, prefix: str, prev_type: str, type_: str) -> bool:
  # conlleval's startOfChunk.
  if prefix in ("B", "S"):
    return True
  if prev_prefix in ("E", "S", "O") and prefix in ("E", "I"):
    return True
  return prefix != "O" and prev_type != type_


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
  """Entity chunks of one tag sequence: [(type, first index, last index)] (inclusive)."""
  found: list[tuple[str, int, int]] = []
  prev_prefix, prev_type, begin = "O", "", 0
  for i, tag in enumerate(list(tags) + ["O"]):  # a final "O" closes the last chunk
    prefix, type_ = _split_tag(tag)
    if _chunk_ends(prev_prefix, prefix, prev_type, type_) and prev_prefix != "O":
      found.append((prev_type, begin, i - 1))
    if _chunk_starts(prev_prefix, prefix, prev_type, type_):
      begin = i
    prev_prefix, prev_type = prefix, type_
  return found


def entity_f1(
  predictions: Sequence[Sequence[str]], labels: Sequence[Sequence[str]]
) -> dict[str, float]:
  """Micro-averaged entity precision / recall / F1 (0..1) over sentences, and token accuracy.

  predictions, labels: per sentence, a list of tags (same lengths). Also gives per-type F1 as
  "f1_<TYPE>".
  """
  if len(predictions) != len(labels):
    raise ValueError(f"{len(predictions)} predicted sentences for {len(labels)} gold sentences")
  gold_set, pred_set = set(), set()
  correct_tokens = total_tokens = 0
  for s, (pred, gold) in enumerate(zip(predictions, labels)):
    if len(pred) != len(gold):
      raise ValueError(f"sentence {s}: {len(pred)} predicted tags for {len(gold)} gold tags")
    gold_set.update((s,) + e for e in entities(gold))
    pred_set.update((s,) + e for e in entities(pred))
    correct_tokens += sum(p == g for p, g in zip(pred, gold))
    total_tokens += len(gold)

  def prf(pred: set, gold: set) -> tuple[float, float, float]:
    tp = len(pred & gold)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return precision, recall, f1

  precision, recall, f1 = prf(pred_set, gold_set)
  out = {
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "token_accuracy": correct_tokens / total_tokens if total_tokens else 0.0,
  }
  for type_ in sorted({e[1] for e in gold_set | pred_set}):
    out[f"f1_{type_}"] = prf(
      {e for e in pred_set if e[1] == type_}, {e for e in gold_set if e[1] == type_}
    )[2]
  return out


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
  """Rewrite IOB1 (B- only between touching entities of one type) as IOB2 (B- on every first
  token). IOB2 input comes back unchanged; the entities are the same either way."""
  out = []
  prev_type = ""
  for tag in tags:
    prefix, type_ = _split_tag(tag)
    if prefix == "I" and prev_type != type_:
      tag = f"B-{type_}"
    out.append(tag)
    prev_type = type_ if prefix != "O" else ""
  return out
