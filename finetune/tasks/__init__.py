"""The fine-tuning tasks, by config.family."""

from __future__ import annotations

from typing import Any

import ml_collections

from finetune.tasks.base import EvalSet, Task
from finetune.tasks.clue import ClueTask
from finetune.tasks.cmrc import CmrcTask
from finetune.tasks.glue import GlueTask
from finetune.tasks.ner import NerTask
from finetune.tasks.race import RaceTask
from finetune.tasks.squad import SquadTask

TASKS: dict[str, type[Task]] = {
  "glue": GlueTask,
  "squad": SquadTask,
  "race": RaceTask,
  "ner": NerTask,
  "clue": ClueTask,
  "cmrc": CmrcTask,
}


def get_task(config: ml_collections.ConfigDict, tokenizer: Any) -> Task:
  """The Task for config.family ("glue", "squad", "race", "ner", "clue", "cmrc")."""
  family = config.get("family", "")
  if family not in TASKS:
    raise ValueError(
      f"config.family {family!r} is not one of 'glue', 'squad', 'race', 'ner', 'clue', 'cmrc'; "
      "start from one of finetune/configs/*.py"
    )
  return TASKS[family](config, tokenizer)


__all__ = ["EvalSet", "Task", "get_task"]
