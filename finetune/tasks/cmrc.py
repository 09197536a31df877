"""CMRC 2018 (Chinese span extraction, SQuAD-style JSON): AlbertForQuestionAnswering.

Data: config.data_dir holds the files as CLUE distributes them (train.json, dev.json; test.json
is unlabeled and skipped) or as the CMRC repository names them (cmrc2018_train.json,
cmrc2018_dev.json). The reader, the sliding windows, the answer mapping and the n-best search
are SQuAD v1.1's (`finetune.tasks.squad`, `squad_data`); the tokens' character spans come from
the tokenizer's offsets (`return_offsets_mapping`, as a WordPiece tokenizer gives them), so an
answer span maps back to the raw characters. Scores: the official CMRC metric
(`finetune.cmrc_metric`: character-level F1 and EM, and their average).
"""

from __future__ import annotations

from finetune import cmrc_metric
from finetune.tasks.base import Task
from finetune.tasks.squad import SquadPredictions, SquadTask
from finetune.tasks.squad_data import read_squad_json

FILES = {"train": ("train.json", "cmrc2018_train.json"), "dev": ("dev.json", "cmrc2018_dev.json")}


class CmrcTask(SquadTask):
  """CMRC 2018: SQuAD v1.1's task with CMRC's files and metric."""

  def __init__(self, config, tokenizer):
    Task.__init__(self, config, tokenizer)
    self.v2 = False  # every CMRC 2018 question has an answer
    self._threshold = None

  def _examples(self, split: str):
    if not self.config.get("data_dir"):
      raise ValueError("CMRC 2018 reads its JSON files: set --config.data_dir")
    for name in FILES[split]:
      if self.is_data_file(name):
        return read_squad_json(self.data_path(name), "1.1")
    raise FileNotFoundError(f"no CMRC 2018 {split} file in {self.config.data_dir}: {FILES[split]}")

  @property
  def best_metric(self) -> str:
    return "dev/average"

  def score(self, eval_set, outputs):
    answers, diffs, nbest, golds = self.best_answers(eval_set, outputs)
    return cmrc_metric.evaluate(golds, answers), SquadPredictions(answers, diffs, nbest, answers)
