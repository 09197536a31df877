"""SQuAD scoring as the official evaluation scripts do it (v1.1 and v2.0).

Answers are compared after the official normalization: lower-case, drop ASCII punctuation, drop
the articles a/an/the, collapse whitespace. Exact match and token F1 take the max over the gold
answers. The two versions differ on empty answers: v2.0 scores an empty prediction against a
no-answer question as 1 (and an answer against it as 0), v1.1 has no empty gold answers and gives
F1 0 whenever no token is shared.

v2.0 with no-answer scores (`na_probs`, here the null-minus-best-span score difference) also gives
`best_exact` / `best_f1` and the thresholds that reach them (`best_exact_thresh`,
`best_f1_thresh`), found as the official script does: questions sorted by their score, the best
prefix answered, the rest predicted as no-answer (answer when score <= threshold).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
  """Lower-case, remove punctuation, articles and extra whitespace (the official order)."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in _PUNCTUATION)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def _tokens(text: str) -> list[str]:
  return normalize_answer(text).split() if text else []


def exact_match(prediction: str, gold: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_v1(prediction: str, gold: str) -> float:
  """v1.1's token F1: 0 when no normalized token is shared (also when both are empty)."""
  pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
  same = sum((collections.Counter(pred) & collections.Counter(ref)).values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred), same / len(ref)
  return 2 * precision * recall / (precision + recall)


def f1_v2(prediction: str, gold: str) -> float:
  """v2.0's token F1: when either side has no token, 1 if both have none, else 0."""
  pred, ref = _tokens(prediction), _tokens(gold)
  if not pred or not ref:
    return float(pred == ref)
  same = sum((collections.Counter(pred) & collections.Counter(ref)).values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred), same / len(ref)
  return 2 * precision * recall / (precision + recall)


def _check_golds(golds: Mapping[str, Sequence[str]]) -> None:
  if not golds:
    raise ValueError("no questions to score")


def percent_scores(
  golds: Mapping[str, Sequence[str]],
  predictions: Mapping[str, str],
  score: Callable[[Sequence[str], str], tuple[float, float]],
  dataset: str,
) -> tuple[float, float]:
  """(exact, f1) in percent of all questions, from `score(answers, prediction)` -> (exact, f1)
  of each answered question: an unanswered one scores 0, as in the official scripts (SQuAD v1.1,
  CMRC 2018). A question without a gold answer is an error (`dataset` names the data set)."""
  _check_golds(golds)
  exact = f1 = 0.0
  for qid, answers in golds.items():
    if not answers:
      raise ValueError(f"question {qid!r} has no gold answer ({dataset} needs one)")
    if qid in predictions:
      e, f = score(answers, str(predictions[qid]))
      exact, f1 = exact + e, f1 + f
  return 100.0 * exact / len(golds), 100.0 * f1 / len(golds)


def evaluate_v1(
  golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> dict[str, float]:
  """Official v1.1 scores in percent: {"exact_match", "f1"}.

  golds: question id -> gold answer texts (at least one each); predictions: id -> text. A
  question without a prediction scores 0, as in the official script.
  """

  def score(answers, pred):
    return max(exact_match(pred, a) for a in answers), max(f1_v1(pred, a) for a in answers)

  em, f1 = percent_scores(golds, predictions, score, "SQuAD v1.1")
  return {"exact_match": em, "f1": f1}


def _raw_scores_v2(golds, predictions):
  exact, f1 = {}, {}
  for qid, answers in golds.items():
    # Gold answers that normalize to nothing are dropped; none left means "no answer".
    answers = [a for a in answers if normalize_answer(a)] or [""]
    if qid not in predictions:
      continue
    pred = predictions[qid]
    exact[qid] = max(exact_match(pred, a) for a in answers)
    f1[qid] = max(f1_v2(pred, a) for a in answers)
  return exact, f1


def _apply_threshold(scores, na_probs, has_answer, threshold):
  out = {}
  for qid, score in scores.items():
    out[qid] = float(not has_answer[qid]) if na_probs[qid] > threshold else score
  return out


def best_threshold(
  predictions: Mapping[str, str],
  scores: Mapping[str, float],
  na_probs: Mapping[str, float],
  has_answer: Mapping[str, bool],
) -> tuple[float, float]:
  """(best score in percent, threshold): the official find_best_thresh.

  Starting from "every question unanswered" (score = the share of no-answer questions, threshold
  0.0 as the official script starts), questions are answered in increasing order of na_prob; the
  prefix with the highest total wins and its last na_prob is the threshold.
  """
  num_no_answer = sum(1 for q in has_answer if not has_answer[q])
  current = best = float(num_no_answer)
  threshold = 0.0
  for qid in sorted(na_probs, key=lambda q: na_probs[q]):
    if qid not in scores:
      continue
    if has_answer[qid]:
      diff = scores[qid]
    else:
      diff = -1.0 if predictions[qid] else 0.0
    current += diff
    if current > best:
      best, threshold = current, na_probs[qid]
  return 100.0 * best / len(scores), threshold


def evaluate_v2(
  golds: Mapping[str, Sequence[str]],
  predictions: Mapping[str, str],
  na_probs: Mapping[str, float] | None = None,
  na_prob_thresh: float = 1.0,
) -> dict[str, float]:
  """Official v2.0 scores in percent.

  golds: id -> gold answer texts ([] for a no-answer question); predictions: id -> text ("" for
  no answer); na_probs: id -> no-answer score (higher = more likely unanswerable). Returns exact,
  f1, total, HasAns_* and NoAns_* (when such questions exist) and, given na_probs, best_exact,
  best_exact_thresh, best_f1, best_f1_thresh.
  """
  _check_golds(golds)
  # As the official script: a question has an answer when its gold list is not empty.
  has_answer = {qid: bool(answers) for qid, answers in golds.items()}
  exact_raw, f1_raw = _raw_scores_v2(golds, predictions)
  if not exact_raw:
    raise ValueError("none of the gold questions has a prediction")
  probs = dict(na_probs) if na_probs is not None else {qid: 0.0 for qid in predictions}
  missing = [q for q in exact_raw if q not in probs]
  if missing:
    raise ValueError(f"na_probs lacks {len(missing)} predicted questions, e.g. {missing[:3]}")
  exact = _apply_threshold(exact_raw, probs, has_answer, na_prob_thresh)
  f1 = _apply_threshold(f1_raw, probs, has_answer, na_prob_thresh)
  # The official script averages over the questions that have a prediction.
  out = {
    "exact": 100.0 * sum(exact.values()) / len(exact),
    "f1": 100.0 * sum(f1.values()) / len(f1),
    "total": len(exact),
  }
  for name, wanted in (("HasAns", True), ("NoAns", False)):
    qids = [q for q in exact if has_answer[q] == wanted]
    if qids:
      out.update(
        {
          f"{name}_exact": 100.0 * sum(exact[q] for q in qids) / len(qids),
          f"{name}_f1": 100.0 * sum(f1[q] for q in qids) / len(qids),
          f"{name}_total": len(qids),
        }
      )
  if na_probs is not None:
    out["best_exact"], out["best_exact_thresh"] = best_threshold(
      predictions, exact_raw, probs, has_answer
    )
    out["best_f1"], out["best_f1_thresh"] = best_threshold(predictions, f1_raw, probs, has_answer)
  return out
