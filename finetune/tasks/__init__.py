"""The fine-tuning tasks, by config.family."""

from __future__ import annotations

from typing import Any

import ml_collections

from finetune.tasks.base import EvalSet, Task


def get_task(config: ml_collections.ConfigDict, tokenizer: Any) -> Task:
  """The Task for config.family ("glue", "squad", "race", "ner", "clue", "cmrc")."""
  family = config.get("family", "")
  if family == "glue":
    from finetune.tasks.glue import GlueTask

    return GlueTask(config, tokenizer)
  if family == "squad":
    from finetune.tasks.squad import SquadTask

    return SquadTask(config, tokenizer)
  if family == "race":
    from finetune.tasks.race import RaceTask

    return RaceTask(config, tokenizer)
  if family == "ner":
    from finetune.tasks.ner import NerTask

    return NerTask(config, tokenizer)
  if family == "clue":
    from finetune.tasks.clue import ClueTask

    return ClueTask(config, tokenizer)
  if family == "cmrc":
    from finetune.tasks.cmrc import CmrcTask

    return CmrcTask(config, tokenizer)
  raise ValueError(
    f"config.family {family!r} is not one of 'glue', 'squad', 'race', 'ner', 'clue', 'cmrc'; "
    "start from one of finetune/configs/*.py"
  )


__all__ = ["EvalSet", "Task", "get_task"]
