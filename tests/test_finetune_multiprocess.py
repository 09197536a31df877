"""Fine-tuning over two CPU processes (jax.distributed over gloo) gives the outputs of one process.

The same SST-2-format fine-tune runs once as 1 process x 2 devices and once as 2 processes x 1
device (the same 2-device mesh): each process of the second run feeds its half of every global
batch, the dev and test predictions are gathered across processes (the last eval batch is part
padding, split over both), and only process 0 writes the files.
tests/finetune_multiprocess_helper.py is one such process.
"""

import json
import os
import random

import finetune_testdata as td
import jax
import numpy as np
import pytest
from multiprocess_launch import finish, free_port, start

import albert_flax as af
from albert_flax import sharding
from albert_flax.train import perf

N_DEV, N_TEST = 11, 7  # neither a multiple of the global eval batch (4)


def _files(directory, skip=("checkpoints", "model")):
  """Relative paths of every file under `directory`, outside the orbax directories."""
  out = []
  for root, dirs, names in os.walk(directory):
    rel = os.path.relpath(root, directory)
    if rel == ".":
      dirs[:] = [d for d in dirs if d not in skip]
    out += [os.path.normpath(os.path.join(rel, n)) for n in names]
  return sorted(out)


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def _close(a, b, tol=1e-5):
  return abs(a - b) <= tol * max(1.0, abs(a))


def test_two_processes_equal_one_process(tmp_path):
  checkpoint = td.tiny_checkpoint(tmp_path)
  data = td.write_sentiment(str(tmp_path / "SST-2"), n_train=24, n_dev=N_DEV)
  rng = random.Random(3)
  td.write(
    os.path.join(data, "test.tsv"),
    td.tsv(["index", "sentence"], *[[i, td.sentence(rng, 5)] for i in range(N_TEST)]),
  )
  runs = {}
  for name in ("single", "multi"):
    runs[name] = (tmp_path / name / "work", tmp_path / name / "out")
    runs[name][1].mkdir(parents=True)
  port = free_port()

  def launch(num_processes, process_id, local_devices, run):
    workdir, out = runs[run]
    return start(
      "finetune_multiprocess_helper.py",
      num_processes,
      process_id,
      port,
      local_devices,
      checkpoint=checkpoint,
      data=data,
      workdir=workdir,
      out=out,
    )

  procs = [launch(1, 0, 2, "single")] + [launch(2, i, 1, "multi") for i in range(2)]
  results = [finish(p, timeout=600) for p in procs]
  for code, output in results:
    assert code == 0, output[-4000:]

  # what train_and_evaluate returned, on each process
  (single_work, single_out), (multi_work, multi_out) = runs["single"], runs["multi"]
  single = json.loads(_read(single_out / "result_0.json"))
  multi = [json.loads(_read(multi_out / f"result_{i}.json")) for i in range(2)]
  assert (single["process_count"], single["device_count"], single["local_device_count"]) == (
    1,
    2,
    2,
  )
  for i, m in enumerate(multi):
    assert (m["process_index"], m["process_count"], m["device_count"], m["local_device_count"]) == (
      i,
      2,
      2,
      1,
    )
    assert m["results"] == multi[0]["results"]  # every process returns the same metrics
  assert set(single["results"]) == set(multi[0]["results"]) == {"dev/accuracy", "best_step"}

  # one copy of each file, by process 0: the same file set, no stray temporaries
  expected = [
    os.path.join("config_history", "0000.json"),
    "eval_results.json",
    "goodput.json",
    "metrics.jsonl",
    os.path.join("predictions", "SST-2.tsv"),
    os.path.join("predictions", "dev_predictions.tsv"),
    "run_status.json",
    "train_config.json",
  ]
  assert _files(single_work) == _files(multi_work) == expected, (
    _files(single_work),
    _files(multi_work),
  )
  for work in (single_work, multi_work):
    assert (work / "model" / "config.json").is_file()
    assert (work / "model" / "spiece.model").is_file()

  # eval_results.json: the same metrics within 1e-5
  a = json.loads(_read(single_work / "eval_results.json"))
  b = json.loads(_read(multi_work / "eval_results.json"))
  assert a == pytest.approx(single["results"]) and b == pytest.approx(multi[0]["results"])
  assert set(a) == set(b) and all(_close(a[k], b[k]) for k in a), (a, b)

  # metrics.jsonl: one row per log / evaluation (process 0 only), the same numbers
  rows_a = [json.loads(line) for line in _read(single_work / "metrics.jsonl").splitlines()]
  rows_b = [json.loads(line) for line in _read(multi_work / "metrics.jsonl").splitlines()]
  keys = [(r["step"], r.get("split")) for r in rows_a]
  assert keys == [(r["step"], r.get("split")) for r in rows_b]
  assert len(set(keys)) == len(keys) == 10 + 2 + 1  # 10 train logs, 2 evaluations, 1 final
  for ra, rb in zip(rows_a, rows_b):
    assert set(ra) == set(rb)
    for k, v in ra.items():
      if isinstance(v, float) and k not in perf.TIMING_KEYS:  # timings differ between runs
        assert _close(v, rb[k]), (k, ra, rb)

  # predictions: every example exactly once, the same rows in the same order. The submission
  # file is identical; the dev file's per-example probabilities (which differ from row to row,
  # by 3e-6 or more, even where the tiny model predicts one class everywhere) agree within
  # 1.5e-6, so rows mixed up by the gather of a padded, split last batch would show.
  submission = _read(single_work / "predictions" / "SST-2.tsv")
  assert submission == _read(multi_work / "predictions" / "SST-2.tsv")
  assert sorted(int(line.split("\t")[0]) for line in submission.splitlines()[1:]) == list(
    range(N_TEST)
  )
  dev_a, dev_b = (
    [line.split("\t") for line in _read(work / "predictions" / "dev_predictions.tsv").splitlines()]
    for work in (single_work, multi_work)
  )
  assert dev_a[0] == dev_b[0] == ["index", "prediction", "label", "p(0)", "p(1)"]
  dev_a, dev_b = dev_a[1:], dev_b[1:]
  assert [r[:3] for r in dev_a] == [r[:3] for r in dev_b]
  assert [int(r[0]) for r in dev_a] == list(range(N_DEV))
  probs_a, probs_b = (np.array([r[3:] for r in rows], float) for rows in (dev_a, dev_b))
  np.testing.assert_allclose(probs_a, probs_b, rtol=0, atol=1.5e-6)
  # rounding to 6 decimals may flip a last digit; the rows' own values differ by more
  assert len(set(probs_a[:, 1])) >= N_DEV - 1  # the rows are told apart by their probabilities
  labels = [line.split("\t")[1] for line in _read(os.path.join(data, "dev.tsv")).splitlines()[1:]]
  assert [r[2] for r in dev_a] == labels  # in the dev file's order
  assert sum(r[1] == r[2] for r in dev_a) / N_DEV == pytest.approx(a["dev/accuracy"])

  # the fine-tuned models (model/, written by every process of the 2-process run) agree
  _, params_a = af.from_pretrained(str(single_work / "model"), af.AlbertForSequenceClassification)
  _, params_b = af.from_pretrained(str(multi_work / "model"), af.AlbertForSequenceClassification)
  leaves_a = jax.tree_util.tree_leaves_with_path(sharding.unbox(params_a))
  leaves_b = jax.tree.leaves(sharding.unbox(params_b))
  assert len(leaves_a) == len(leaves_b) > 0
  for (path, x), y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(
      np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path)
    )
