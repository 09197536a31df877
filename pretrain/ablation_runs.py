"""One variant of the ALBERT paper's ablations (`pretrain.ablations`): its pretraining config,
the pretraining run, the fine-tuning runs on the downstream tasks, and its row of the tables.

Each run writes done.json in its folder when it finishes: a rerun reads that instead of running.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any

import ml_collections
from etils import epath

from albert_flax import paper
from albert_flax import workdir as layout
from finetune import train as finetune_train
from pretrain import train
from pretrain.ablation_report import Variant

DONE_FILE = "done.json"


@dataclasses.dataclass(frozen=True)
class Downstream:
  """A fine-tuning run per variant: its column, config file, settings and the dev metric(s)."""

  column: str
  config: str  # finetune/configs/<config>.py
  settings: dict
  metrics: tuple[str, ...]  # "accuracy", or ("f1", "exact...") shown as F1/EM


def downstream_tasks(
  glue_dir: str, squad_dir: str, race_dir: str, builtin_dir: str, finetune: bool = True
) -> list[Downstream]:
  """The paper's tasks whose folders are given; the two built-in tasks when none is; none
  without `finetune`."""
  tasks = []
  if not finetune:
    return tasks
  if squad_dir:
    tasks += [
      Downstream("SQuAD1.1", "squad", {"version": "1.1", "data_dir": squad_dir}, ("f1", "exact")),
      Downstream("SQuAD2.0", "squad", {"version": "2.0", "data_dir": squad_dir}, ("f1", "exact")),
    ]
  if glue_dir:
    tasks += [
      Downstream("MNLI", "glue", {"task": "mnli", "data_dir": f"{glue_dir}/MNLI"}, ("accuracy",)),
      Downstream("SST-2", "glue", {"task": "sst2", "data_dir": f"{glue_dir}/SST-2"}, ("accuracy",)),
    ]
  if race_dir:
    tasks.append(Downstream("RACE", "race", {"data_dir": race_dir}, ("accuracy",)))
  if not tasks:
    tasks = [
      Downstream(
        "docstring_kind",
        "glue",
        {"task": "sst2", "data_dir": f"{builtin_dir}/docstring_kind"},
        ("accuracy",),
      ),
      Downstream(
        "next_sentence",
        "glue",
        {"task": "mrpc", "data_dir": f"{builtin_dir}/next_sentence"},
        ("accuracy",),
      ),
    ]
  return tasks


def dev_metric(results: dict[str, float], name: str) -> float | None:
  """The dev value of `name` in fine-tuning results ("<set>/<metric>"): the first dev set's
  (MNLI: matched), in percent; SQuAD's exact match is "exact_match" (v1.1) or "exact" (v2.0)."""
  for key in sorted(results):
    evaluated, _, metric = key.partition("/")
    if evaluated.startswith("dev") and (metric == name or metric == f"{name}_match"):
      value = float(results[key])
      return value if metric != "accuracy" and value > 1.0 else 100.0 * value
  return None


def pretraining_config(base: ml_collections.ConfigDict, variant: Variant, budget: dict):
  """The pretraining config of `variant`: `base` with the budget and the variant's settings."""
  c = ml_collections.ConfigDict(base.to_dict())
  c.model_overrides.embedding_size = variant.embedding_size
  if variant.sharing != "all" or "cross_layer_sharing" in c.model_overrides:
    if "cross_layer_sharing" not in c.model_overrides:
      raise ValueError(
        f"variant {variant.name}: this albert_flax has no AlbertConfig.cross_layer_sharing"
      )
    c.model_overrides.cross_layer_sharing = variant.sharing
  c.sentence_loss = variant.sentence_loss
  for key, value in budget.items():
    target, *parents, leaf = [c, *key.split(".")]
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


def count_params(model_config: Any) -> int:
  """Parameters of the encoder (AlbertModel: embeddings, layers, pooler), as the paper counts
  them (albert_flax.paper); from shapes, nothing allocated."""
  return paper.backbone_parameter_count(model_config)


def done_results(path: epath.Path) -> dict | None:
  """What the run in `path` wrote to done.json when it finished; None when it has not."""
  f = path / DONE_FILE
  return json.loads(f.read_text()) if f.exists() else None


def run_pretraining(config, directory: epath.Path) -> dict:
  """Pretrain (or resume) in `directory`; its eval rows. Skipped when done.json is there."""
  done = done_results(directory)
  if done is None:
    result = train.train_and_evaluate(config, str(directory))
    if result.get("interrupted"):
      raise KeyboardInterrupt(f"pretraining in {directory} interrupted: rerun to resume")
    done = {"step": result["step"]}
    (directory / DONE_FILE).write_text(json.dumps(done))
  rows = [json.loads(line) for line in (directory / layout.METRICS_FILE).read_text().splitlines()]
  return {"eval_rows": [r for r in rows if r.get("split") == "eval"], **done}


def run_finetuning(task: Downstream, init_from: epath.Path, directory: epath.Path, ft: dict):
  """Fine-tune the pretrained model on `task` through the fine-tuning program; dev results."""
  done = done_results(directory)
  if done is not None:
    return done
  c = importlib.import_module(f"finetune.configs.{task.config}").get_config()
  for key, value in task.settings.items():
    c[key] = value
  c.init_from = str(init_from)
  c.train_steps = ft["steps"]
  c.batch_size = ft["batch"]
  c.max_seq_length = ft["seq"]
  c.eval_every_steps = ft["steps"]  # one evaluation, at the end
  c.max_train_examples = ft["max_examples"]
  c.seed = ft["seed"]
  c.progress_bar = False
  c.tensorboard = False
  results = finetune_train.train_and_evaluate(c, str(directory))
  if results.get("interrupted"):
    raise KeyboardInterrupt(f"fine-tuning in {directory} interrupted: rerun to resume")
  (directory / DONE_FILE).write_text(json.dumps(results))
  return results


def variant_result(
  variant: Variant, pretrained: dict, finetuned: dict[str, dict], tasks, params: int
) -> dict:
  """Our row of a variant: parameters, MLM / NSP / SOP accuracy (%), task scores, average."""
  final = pretrained["eval_rows"][-1] if pretrained["eval_rows"] else {}
  scores, values = {}, []
  for task in tasks:
    found = [dev_metric(finetuned.get(task.column, {}), m) for m in task.metrics]
    if found[0] is None:
      continue
    values.append(found[0])
    scores[task.column] = "/".join(f"{v:.1f}" for v in found if v is not None)
    if len(found) == 1:
      scores[task.column] = found[0]
  percent = {k: 100.0 * final[m] for k, m in _PRETRAINING_METRICS.items() if m in final}
  return {
    "variant": variant.name,
    "params": params,
    **percent,
    "tasks": scores,
    "avg": sum(values) / len(values) if len(values) == len(tasks) and values else None,
    "mlm_curve": [
      (r["step"], 100.0 * r["masked_lm_accuracy"])
      for r in pretrained["eval_rows"]
      if "masked_lm_accuracy" in r
    ],
  }


_PRETRAINING_METRICS = {
  "mlm": "masked_lm_accuracy",
  "nsp": "next_sentence_accuracy",
  "sop": "sentence_order_accuracy",
}
