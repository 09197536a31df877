"""Fine-tuning metrics on hand-checked predictions: GLUE, entity F1, SQuAD v1.1 / v2.0."""

import math

import numpy as np
import pytest

from finetune import metrics, squad_metrics

# --------------------------------------------------------------------- classification


def test_accuracy_and_binary_f1():
  pred = [1, 0, 1, 1, 0, 0]
  gold = [1, 0, 0, 1, 1, 0]
  assert metrics.accuracy(pred, gold) == pytest.approx(4 / 6)
  # tp = 2, fp = 1, fn = 1 -> precision 2/3, recall 2/3, f1 2/3
  assert metrics.binary_f1(pred, gold) == pytest.approx(2 / 3)
  assert metrics.binary_f1([0, 0], [1, 0]) == 0.0


def test_matthews_correlation_by_hand():
  pred = [1, 1, 1, 0, 0, 1, 0, 1]
  gold = [1, 1, 0, 0, 1, 1, 0, 0]
  tp, tn, fp, fn = 3, 2, 2, 1
  expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  assert metrics.matthews_corrcoef(pred, gold) == pytest.approx(expected)
  assert metrics.matthews_corrcoef(gold, gold) == pytest.approx(1.0)
  assert metrics.matthews_corrcoef([1 - g for g in gold], gold) == pytest.approx(-1.0)
  assert metrics.matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # constant prediction


def test_pearson_spearman():
  gold = [0.0, 1.0, 2.0, 3.0, 4.0]
  out = metrics.pearson_spearman([0.0, 1.0, 4.0, 9.0, 16.0], gold)
  assert out["spearman"] == pytest.approx(1.0)  # monotone
  x, y = np.array([0.0, 1, 4, 9, 16]), np.array(gold)
  expected = np.sum((x - x.mean()) * (y - y.mean())) / np.sqrt(
    np.sum((x - x.mean()) ** 2) * np.sum((y - y.mean()) ** 2)
  )
  assert out["pearson"] == pytest.approx(expected)
  assert metrics.pearson_spearman([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]) == {
    "pearson": 0.0,
    "spearman": 0.0,
  }


def test_metric_shape_errors():
  with pytest.raises(ValueError, match="2 predictions for 3 labels"):
    metrics.accuracy([1, 0], [1, 0, 1])
  with pytest.raises(ValueError, match="no examples"):
    metrics.accuracy([], [])


# --------------------------------------------------------------------- entities


def test_entities_iob2_and_iob1():
  iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
  assert metrics.entities(iob2) == [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 5), ("ORG", 7, 7)]
  # IOB1: I- starts an entity; B- only separates two touching entities of one type.
  iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "O", "I-ORG"]
  assert metrics.entities(iob1) == metrics.entities(iob2)
  assert metrics.iob1_to_iob2(iob1) == iob2
  assert metrics.iob1_to_iob2(iob2) == iob2
  # a stray I- (invalid IOB2) still opens an entity, as conlleval reads it
  assert metrics.entities(["O", "I-ORG", "I-ORG"]) == [("ORG", 1, 2)]
  # a type change inside a run starts a new entity
  assert metrics.entities(["B-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 2)]


def test_entity_f1_by_hand():
  gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
  pred = [
    ["B-PER", "I-PER", "O", "B-ORG"],  # PER right, LOC missed (typed ORG)
    ["B-ORG", "O", "B-MISC", "O"],
  ]  # ORG right, MISC boundary wrong
  out = metrics.entity_f1(pred, gold)
  # gold 4 entities, predicted 4, correct 2
  assert out["precision"] == pytest.approx(0.5)
  assert out["recall"] == pytest.approx(0.5)
  assert out["f1"] == pytest.approx(0.5)
  assert out["f1_PER"] == pytest.approx(1.0)
  assert out["f1_LOC"] == 0.0
  assert out["token_accuracy"] == pytest.approx(6 / 8)
  assert metrics.entity_f1(gold, gold)["f1"] == pytest.approx(1.0)
  with pytest.raises(ValueError, match="sentence 1"):
    metrics.entity_f1([gold[0], ["O"]], gold)


# --------------------------------------------------------------------- SQuAD


@pytest.mark.parametrize(
  "text, normalized",
  [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  an   apple, a day ", "apple day"),
    ("Theatre", "theatre"),  # "the" only as a whole word
    ("A", ""),
    ("U.S.-based", "usbased"),
    ("“smart” quotes", "“smart” quotes"),  # only ASCII punctuation is removed
    ("the the", ""),
  ],
)
def test_official_normalization(text, normalized):
  assert squad_metrics.normalize_answer(text) == normalized


def test_squad_v1_scores_by_hand():
  golds = {
    "q1": ["Denver Broncos", "The Denver Broncos"],
    "q2": ["Santa Clara, California"],
    "q3": ["1990"],
    "q4": ["the"],
  }
  preds = {
    "q1": "denver broncos.",
    "q2": "Santa Clara",
    "q3": "in 1991",
    "q4": "a",
  }  # q4: normalizes to "" on both sides: EM 1, v1.1 F1 0
  out = squad_metrics.evaluate_v1(golds, preds)
  # q2: pred [santa, clara], gold [santa, clara, california]: P 1, R 2/3, F1 0.8
  assert out["exact_match"] == pytest.approx(100 * 2 / 4)
  assert out["f1"] == pytest.approx(100 * (1 + 0.8 + 0 + 0) / 4)
  # a missing prediction scores 0 but still counts
  out = squad_metrics.evaluate_v1(golds, {"q1": "Denver Broncos"})
  assert out["exact_match"] == pytest.approx(25.0)


def test_squad_v2_no_answer_scoring_and_threshold():
  golds = {"a": ["Paris"], "b": [], "c": ["blue whale"], "d": []}
  # raw predictions (best span for every question) and null - best score differences
  preds = {"a": "Paris", "b": "London", "c": "whale", "d": "x"}
  diffs = {"a": -3.0, "b": 2.0, "c": -1.0, "d": 0.5}
  raw = squad_metrics.evaluate_v2(golds, preds, na_probs=diffs)
  # with no threshold applied (na_prob_thresh 1.0 > every diff except b's 2.0): b -> no answer
  # exact: a 1, b 1 (diff 2 > 1 -> predicted null), c 0, d 0
  assert raw["exact"] == pytest.approx(50.0)
  assert raw["HasAns_total"] == 2 and raw["NoAns_total"] == 2
  # f1 of c: pred [whale], gold [blue, whale] -> P 1, R 0.5 -> 2/3
  assert raw["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3 + 0) / 4)
  # Best threshold (official scan over sorted diffs): start 2 (the no-answer questions);
  # a (-3): +1 -> 3; c (-1): +0 (exact) -> 3; d (0.5): -1 -> 2; b (2.0): -1 -> 1.
  assert raw["best_exact"] == pytest.approx(75.0)
  assert raw["best_exact_thresh"] == -3.0
  # for F1: a +1 -> 3, c + 2/3 -> 3.667 (best), d -1, b -1
  assert raw["best_f1"] == pytest.approx(100 * (2 + 1 + 2 / 3) / 4)
  assert raw["best_f1_thresh"] == -1.0
  # empty predictions on no-answer questions score 1, on answerable ones 0
  final = {"a": "Paris", "b": "", "c": "", "d": ""}
  out = squad_metrics.evaluate_v2(golds, final)
  assert out["exact"] == pytest.approx(75.0)
  assert out["NoAns_exact"] == pytest.approx(100.0)
  assert out["HasAns_exact"] == pytest.approx(50.0)
  assert "best_f1" not in out


def test_squad_v2_f1_empty_rules():
  assert squad_metrics.f1_v2("", "") == 1.0
  assert squad_metrics.f1_v2("the", "") == 1.0  # both normalize to no token
  assert squad_metrics.f1_v2("a cat", "") == 0.0
  assert squad_metrics.f1_v1("the", "a") == 0.0


def test_softmax_rows_and_large_scores():
  probs = metrics.softmax([[0.0, np.log(3.0)], [1000.0, 1000.0]])
  np.testing.assert_allclose(probs, [[0.25, 0.75], [0.5, 0.5]])  # no overflow at 1000
  np.testing.assert_allclose(metrics.softmax([2.0, 2.0, 2.0, 2.0]), [0.25] * 4)
