"""CMRC 2018 scoring as its official evaluation script (cmrc2018_evaluate.py, v5) does it.

Unlike SQuAD's word-level metric, CMRC 2018 compares answers character by character:
  - normalization: lower-case and strip; for F1 the text is split into segments, every CJK
    character (U+4E00..U+9FA5) and every listed punctuation mark its own segment, the runs of other
    characters split into words, and the punctuation marks dropped; for EM the punctuation marks
    are removed and the strings compared whole (spaces kept).
  - F1 of one answer: from the longest common *contiguous* run of segments (not SQuAD's bag of
    tokens): precision = lcs / len(prediction), recall = lcs / len(answer); the best over the gold
    answers. EM: 1 if any gold answer equals the prediction after normalization.
  - Scores are in percent over all questions (an unanswered question scores 0); "average" is
    (EM + F1) / 2, the figure CMRC and CLUE rank by.

The official script splits the non-CJK runs with nltk.word_tokenize, which needs nltk's punkt data
(a download). Here they are split by a regular expression instead: numbers (with their decimal
points and thousands commas), runs of letters/digits, and every other symbol alone. That is what
word_tokenize does on the numbers, Latin names and units CMRC answers hold; the two differ on
English contractions and quotes (word_tokenize gives "do" "n't", `` ''), which CMRC answers
almost never contain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from finetune import squad_metrics

# The official script's list. "……" is one two-character entry, so a lone "…" never matches it,
# as in the official script.
PUNCTUATION = (
  "-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
  "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
  "「", "」", "（", "）", "－", "～", "『", "』",
)  # fmt: skip
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_WORDS = re.compile(r"\d+(?:[.,]\d+)+|\w+|[^\w\s]")


def _words(text: str) -> list[str]:
  return _WORDS.findall(text)


def mixed_segmentation(text: str, remove_punctuation: bool = False) -> list[str]:
  """Lower-cased segments: each CJK character and punctuation mark alone, other runs as words."""
  text = str(text).lower().strip()
  segments: list[str] = []
  run = ""
  for ch in text:
    if remove_punctuation and ch in PUNCTUATION:
      continue
    if _CJK.match(ch) or ch in PUNCTUATION:
      if run:
        segments.extend(_words(run))
        run = ""
      segments.append(ch)
    else:
      run += ch
  if run:
    segments.extend(_words(run))
  return segments


def remove_punctuation(text: str) -> str:
  """Lower-cased and stripped, without the listed punctuation marks."""
  return "".join(ch for ch in str(text).lower().strip() if ch not in PUNCTUATION)


def longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
  """Length of the longest common contiguous run of two segment lists."""
  best = 0
  previous = [0] * (len(b) + 1)
  for x in a:
    current = [0] * (len(b) + 1)
    for j, y in enumerate(b):
      if x == y:
        current[j + 1] = previous[j] + 1
        best = max(best, current[j + 1])
    previous = current
  return best


def f1_score(answers: Sequence[str], prediction: str) -> float:
  """The best F1 (in [0, 1]) of `prediction` against the gold answers."""
  prediction_segments = mixed_segmentation(prediction, remove_punctuation=True)
  scores = [0.0]
  for answer in answers:
    answer_segments = mixed_segmentation(answer, remove_punctuation=True)
    common = longest_common_run(answer_segments, prediction_segments)
    if common == 0:
      continue
    precision = common / len(prediction_segments)
    recall = common / len(answer_segments)
    scores.append(2 * precision * recall / (precision + recall))
  return max(scores)


def exact_match(answers: Sequence[str], prediction: str) -> float:
  """1.0 if any gold answer equals the prediction after `remove_punctuation`, else 0.0."""
  predicted = remove_punctuation(prediction)
  return float(any(remove_punctuation(a) == predicted for a in answers))


def evaluate(
  golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> dict[str, float]:
  """Official scores in percent: {"f1", "em", "average"}; question id -> answers / prediction.
  A question without a prediction scores 0 (and is counted)."""

  def score(answers, prediction):
    return exact_match(answers, prediction), f1_score(answers, prediction)

  em, f1 = squad_metrics.percent_scores(golds, predictions, score, "CMRC 2018")
  return {"f1": f1, "em": em, "average": (f1 + em) / 2}
