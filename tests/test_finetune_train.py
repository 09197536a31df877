"""End-to-end fine-tuning runs (train_and_evaluate and the command line) on small data sets in
the real formats, from a tiny orbax checkpoint with its own trained tokenizer."""

import json
import os
import subprocess
import sys

import finetune_testdata as td
import numpy as np
import pytest

import albert_flax as af
from finetune import squad_metrics
from finetune.configs import glue, ner, race, squad
from finetune.data import DataError
from finetune.train import train_and_evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """A tiny pretrained-model directory: config.json, params/ (orbax), spiece.model."""
  return td.tiny_checkpoint(tmp_path_factory.mktemp("tiny_albert"))


_config = td.run_config


def _read_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def test_sst2_really_learns(checkpoint, tmp_path):
  """SST-2-format data whose label is told by a cue word: the pipeline must learn it."""
  data = td.write_sentiment(str(tmp_path / "SST-2"), n_train=400, n_dev=40)
  workdir = str(tmp_path / "work")
  config = _config(
    glue,
    checkpoint,
    data,
    task="sst2",
    max_seq_length=16,
    batch_size=16,
    train_steps=100,
    warmup_steps=10,
    learning_rate=1e-3,
    eval_every_steps=50,
    log_every_steps=10,
    export_hf=True,
  )
  results = train_and_evaluate(config, workdir)
  assert results["dev/accuracy"] >= 0.95, results
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  losses = [r["loss"] for r in records if "split" not in r]
  assert len(losses) == 10 and losses[-1] < 0.5 * losses[0]
  assert [r["step"] for r in records if r.get("split") == "eval"] == [50, 100]
  # one best checkpoint is kept: the step the final results come from
  kept = [d for d in os.listdir(os.path.join(workdir, "checkpoints", "best")) if d.isdigit()]
  assert kept == [str(int(results["best_step"]))]
  model, params = af.from_pretrained(
    os.path.join(workdir, "model"), af.AlbertForSequenceClassification
  )
  assert model.config.label_names == ("0", "1") and model.config.num_labels == 2
  assert os.path.isfile(os.path.join(workdir, "model", "spiece.model"))
  assert os.path.isfile(os.path.join(workdir, "hf", "model.safetensors"))
  assert _read_json(os.path.join(workdir, "hf", "config.json"))["architectures"] == [
    "AlbertForSequenceClassification"
  ]


def test_glue_mnli_writes_submissions_and_ax(checkpoint, tmp_path):
  data = td.write_mnli(str(tmp_path / "glue" / "MNLI"))
  workdir = str(tmp_path / "work")
  results = train_and_evaluate(
    _config(glue, checkpoint, data, task="mnli", max_seq_length=32), workdir
  )
  assert set(results) == {"dev_matched/accuracy", "dev_mismatched/accuracy", "best_step"}
  assert _read_json(os.path.join(workdir, "eval_results.json")) == pytest.approx(results)
  # GLUE submission files, AX by the MNLI model, dev predictions with labels
  predictions = os.path.join(workdir, "predictions")
  assert sorted(os.listdir(predictions)) == [
    "AX.tsv",
    "MNLI-m.tsv",
    "MNLI-mm.tsv",
    "dev_matched_predictions.tsv",
    "dev_mismatched_predictions.tsv",
  ]
  with open(os.path.join(predictions, "AX.tsv")) as f:
    lines = f.read().splitlines()
  assert lines[0] == "index\tprediction" and len(lines) == 5
  assert all(
    line.split("\t")[1] in ("entailment", "neutral", "contradiction") for line in lines[1:]
  )
  with open(os.path.join(predictions, "dev_matched_predictions.tsv")) as f:
    header, *rows = [line.split("\t") for line in f.read().splitlines()]
  assert header == [
    "index",
    "prediction",
    "label",
    "p(contradiction)",
    "p(entailment)",
    "p(neutral)",
  ]
  accuracy = np.mean([row[1] == row[2] for row in rows])
  assert accuracy == pytest.approx(results["dev_matched/accuracy"])
  probabilities = np.array([row[3:] for row in rows], float)
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
  assert [header[3 + i][2:-1] for i in probabilities.argmax(-1)] == [row[1] for row in rows]


def test_squad_v2_end_to_end(checkpoint, tmp_path):
  data = td.write_squad(str(tmp_path / "squad"), "2.0")
  workdir = str(tmp_path / "work")
  config = _config(squad, checkpoint, data, version="2.0", doc_stride=16, max_query_length=8)
  results = train_and_evaluate(config, workdir)
  for key in (
    "dev/exact",
    "dev/f1",
    "dev/HasAns_f1",
    "dev/NoAns_f1",
    "dev/best_f1",
    "dev/best_f1_thresh",
    "dev/null_score_diff_threshold",
  ):
    assert key in results
  predictions = _read_json(os.path.join(workdir, "predictions", "predictions.json"))
  odds = _read_json(os.path.join(workdir, "predictions", "null_odds.json"))
  dev = td.squad_json("2.0", seed=1)
  qids = [qa["id"] for a in dev["data"] for p in a["paragraphs"] for qa in p["qas"]]
  assert sorted(predictions) == sorted(qids) == sorted(odds)
  assert all(isinstance(v, str) for v in predictions.values())
  # the reported scores are the official ones of the written predictions
  golds = {
    qa["id"]: [x["text"] for x in qa["answers"]]
    for a in dev["data"]
    for p in a["paragraphs"]
    for qa in p["qas"]
  }
  assert squad_metrics.evaluate_v2(golds, predictions)["f1"] == pytest.approx(results["dev/f1"])
  threshold = results["dev/null_score_diff_threshold"]
  assert all(odds[q] <= threshold for q in qids if predictions[q])
  assert all(predictions[q] == "" for q in qids if odds[q] > threshold)


def test_race_learns_end_to_end(checkpoint, tmp_path):
  """RACE files whose right option starts with "great": the multiple-choice model must learn
  to pick it (chance is 25%)."""
  data = td.write_race(str(tmp_path / "RACE"), per_level=10)
  results = train_and_evaluate(
    _config(
      race,
      checkpoint,
      data,
      max_qa_length=16,
      train_steps=20,
      warmup_steps=2,
      eval_every_steps=10,
      log_every_steps=10,
    ),
    str(tmp_path / "work"),
  )
  for key in ("dev/accuracy", "dev/accuracy_middle", "dev/accuracy_high", "test/accuracy"):
    assert results[key] >= 0.9, results
  written = _read_json(str(tmp_path / "work" / "predictions" / "test_predictions.json"))
  assert len(written) == 40 and {w["prediction"] for w in written} <= set("ABCD")


def test_ner_learns_end_to_end_iob1_and_resume(checkpoint, tmp_path):
  """CoNLL files (IOB1) where city names are LOC and "John Mary" a PER: entity F1 must reach
  0.9 (the tags are a function of the words)."""
  data = td.write_conll(str(tmp_path / "conll"), n_train=160, n_dev=20, iob1=True)
  workdir = tmp_path / "work"
  fields = dict(max_seq_length=16, warmup_steps=6, eval_every_steps=30, log_every_steps=20)
  results = train_and_evaluate(
    _config(ner, checkpoint, data, train_steps=60, **fields), str(workdir)
  )
  for key in ("dev/f1", "dev/precision", "dev/recall", "test/f1"):
    assert results[key] >= 0.9, results
  lines = open(workdir / "predictions" / "dev_predictions.txt").read().split("\n")
  token_lines = [line.split() for line in lines if line]
  assert all(len(parts) == 3 for parts in token_lines)
  # the gold column is IOB2 whatever the input scheme
  assert any(parts[1] == "B-LOC" for parts in token_lines)

  # a rerun with more steps resumes from the latest checkpoint (step 60), not from scratch
  train_and_evaluate(_config(ner, checkpoint, data, train_steps=70, **fields), str(workdir))
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in records if "split" not in r] == [20, 40, 60, 70]
  assert [r["step"] for r in records if r.get("split") == "eval"] == [30, 60, 70]
  assert [d for d in os.listdir(workdir / "checkpoints" / "latest") if d.isdigit()] == ["70"]


def test_bad_data_fails_early_naming_file_and_line(checkpoint, tmp_path):
  data = td.write_cola(str(tmp_path / "CoLA"))
  with open(os.path.join(data, "dev.tsv"), "a") as f:
    f.write("gj04\t2\t\tA sentence with a label CoLA does not have.\n")
  workdir = tmp_path / "work"
  with pytest.raises(DataError, match=r"dev\.tsv:7: label '2' is not one of \['0', '1'\]"):
    train_and_evaluate(_config(glue, checkpoint, data, task="cola"), str(workdir))
  assert not (workdir / "eval_results.json").exists()
  assert not (workdir / "model").exists()


def test_command_line(checkpoint, tmp_path):
  data = td.write_conll(str(tmp_path / "conll"))
  with open(os.path.join(data, "train.txt"), "a") as f:
    f.write("Berlin NNP B-NP B-CITY\n")
  process = subprocess.run(
    [
      sys.executable,
      "-m",
      "finetune",
      f"--config={REPO}/finetune/configs/ner.py",
      f"--workdir={tmp_path / 'work'}",
      f"--config.init_from={checkpoint}",
      f"--config.data_dir={data}",
      "--config.max_seq_length=16",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")},
  )
  assert process.returncode != 0
  line = len(open(os.path.join(data, "train.txt")).read().splitlines())
  assert f"train.txt:{line}: tag 'B-CITY'" in process.stderr, process.stderr[-2000:]
