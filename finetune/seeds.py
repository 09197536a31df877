"""Several fine-tunings of one config in one process, one per seed, and their summary.

ALBERT fine-tuning is unstable on small sets (RTE, MRPC, CoLA, STS-B): the paper and the
original scripts report the best dev result over several runs. `--config.seeds=N` runs seeds
`config.seed` .. `config.seed + N - 1` (`--config.seeds=3,17,42` runs those), one after the
other, sharing one set of jitted steps, so the step compiles once per padded length for all of
them. Outputs in `workdir`:

    seed_<s>/              each run's full workdir (metrics, checkpoints, predictions, model)
    seeds_summary.json     per metric: mean, std (over runs), best; the runs' results; best seed
    model/                 the best run's model (highest task.best_metric)

A rerun resumes: finished runs (their eval_results.json exists) are read, not run again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from albert_flax import paths
from albert_flax import workdir as layout
from finetune.data import write_json
from finetune.export import copy_model
from finetune.spec import resolve_config
from finetune.steps import SharedSteps
from finetune.tasks import get_task

log = logging.getLogger(__name__)


def seed_list(seeds: int | Sequence[int], first: int = 0) -> list[int]:
  """One number N: the N seeds from `first`; several: those seeds."""
  if isinstance(seeds, int):
    seeds = (seeds,)
  seeds = [int(s) for s in seeds]
  if len(seeds) == 1:
    if seeds[0] < 1:
      raise ValueError(f"config.seeds={seeds[0]}: the number of runs must be at least 1")
    return list(range(first, first + seeds[0]))
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"config.seeds {seeds} repeats a seed")
  return seeds


def run_dir(workdir: str | os.PathLike, seed: int) -> str:
  return str(epath.Path(workdir) / layout.SEED_RUN_DIR.format(seed=seed))


def summarize(runs: dict[int, dict[str, float]], best_metric: str) -> dict[str, Any]:
  """Mean, standard deviation (population, over runs) and best (highest) of every metric, and
  the seed whose `best_metric` is highest (the first such seed on ties)."""
  names = sorted({k for r in runs.values() for k in r if k != "best_step"})
  metrics = {}
  for name in names:
    values = np.array([r[name] for r in runs.values() if name in r], np.float64)
    metrics[name] = {
      "mean": float(values.mean()),
      "std": float(values.std()),
      "best": float(values.max()),
    }
  missing = [s for s, r in runs.items() if best_metric not in r]
  if missing:
    raise KeyError(f"runs of seeds {missing} report no {best_metric!r}")
  best_seed = max(runs, key=lambda s: (runs[s][best_metric], -list(runs).index(s)))
  return {
    "seeds": list(runs),
    "best_metric": best_metric,
    "best_seed": best_seed,
    "metrics": metrics,
    "runs": {str(s): r for s, r in runs.items()},
  }


# One fine-tuning run: (config, its workdir, the steps runs share) -> its results.
RunOne = Callable[[ml_collections.ConfigDict, str, SharedSteps], dict[str, Any]]


def train_seeds(
  config: ml_collections.ConfigDict, workdir: str, run_one: RunOne
) -> dict[str, float]:
  """Call `run_one` (`finetune.train.run`) once per seed of `config.seeds`; returns the best
  run's results ({} when a run stopped on request: rerun the command to resume)."""
  workdir = paths.path(workdir)  # local (made absolute), or a bucket: gs://...
  seeds = seed_list(config.seeds, int(config.seed))
  steps = SharedSteps()  # the jitted steps, shared by the runs
  runs: dict[int, dict[str, float]] = {}
  for seed in seeds:
    directory = run_dir(workdir, seed)
    done = epath.Path(directory) / layout.EVAL_RESULTS_FILE
    if done.is_file():
      runs[seed] = json.loads(done.read_text())
      log.info("seed %d already finished in %s", seed, directory)
      continue
    run_config = ml_collections.ConfigDict(config.to_dict())
    run_config.seed = seed
    run_config.seeds = None
    log.info("seed %d of %s -> %s", seed, seeds, directory)
    results = run_one(run_config, directory, steps)
    if results.get("interrupted"):
      return results  # stopped on request: a rerun resumes this seed
    runs[seed] = results
  best_metric = steps.best_metric or _best_metric(config)
  summary = summarize(runs, best_metric)
  if steps.steps is not None:
    summary["compiles"] = steps.compiles.counts()
  best_seed = summary["best_seed"]
  if jax.process_index() == 0:
    copy_model(epath.Path(run_dir(workdir, best_seed)) / layout.MODEL_DIR, workdir)
    write_json(workdir / layout.SEEDS_SUMMARY_FILE, summary)
  log.info(
    "%d seeds: best %s = %s (seed %d); %s",
    len(seeds),
    best_metric,
    runs[best_seed][best_metric],
    best_seed,
    {
      k: f"{v['mean']:.4f} +- {v['std']:.4f} (best {v['best']:.4f})"
      for k, v in summary["metrics"].items()
    },
  )
  return runs[best_seed]


def _best_metric(config: ml_collections.ConfigDict) -> str:
  """The task's best-checkpoint metric, when every run was already finished."""
  return get_task(resolve_config(config), None).best_metric
