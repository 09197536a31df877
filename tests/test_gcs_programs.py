"""The programs with everything in a Cloud Storage bucket (a local server: tests/gcs_server.py).

Corpora are globbed and streamed from `gs://`; static shards are written there and read back by
array_record. Pretraining (`python -m pretrain`) reads its corpus from the bucket and works in a
`gs://` workdir; a run killed with SIGKILL after a checkpoint resumes from the bucket to the
result of an uninterrupted run, which `af.from_pretrained("gs://...")` loads. Two processes
(jax.distributed on CPU, over gloo) then fine-tune from that bucket checkpoint, reading their data
from the bucket and sharing one `gs://` workdir for checkpoints, predictions, results and model.

The runs are subprocesses (the program as users run it) sharing a persistent XLA compilation
cache, so each model compiles once; the model and the runs are as small as the checks allow.
"""

import json
import os
import signal
import time
import uuid

import finetune_testdata as td
import jax
import numpy as np
import pytest
from etils import epath
from multiprocess_launch import run_processes
from test_pretrain_train import (
  RUN_STEPS,
  _comparable,
  _env,
  _launch,
  _run,
  _small_overrides,
  _write_corpus,
)

import albert_flax as af

# Pretraining steps (the other small runs' number: their compiled step serves these runs too), a
# checkpoint every 8: the run is killed after the first.
STEPS = RUN_STEPS
EVERY = 8


# ----------------------------------------------------------------------------- the bucket


@pytest.fixture(scope="module")
def bucket(gcs_server):
  """A fresh folder in the session's bucket, for this file's runs."""
  return epath.Path(f"gs://{gcs_server.bucket}/programs-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def array_record_on_the_server(gcs_server, monkeypatch):
  """array_record reads gs:// itself (riegeli's GcsReader, google-cloud-cpp): point it here."""
  monkeypatch.setenv("CLOUD_STORAGE_EMULATOR_ENDPOINT", gcs_server.url)


def _names(gcs_server, path: epath.Path) -> list[str]:
  """The names right under a bucket folder, as the server lists them (no client cache: other
  processes write the bucket)."""
  prefix = os.fspath(path).removeprefix(f"gs://{gcs_server.bucket}/") + "/"
  return sorted({n[len(prefix) :].split("/")[0] for n in gcs_server.object_names(prefix)})


def _complete_steps(gcs_server, workdir: epath.Path) -> list[int]:
  """Steps whose checkpoint orbax has committed (in a bucket: commit_success.txt written)."""
  root = workdir / "checkpoints"
  prefix = os.fspath(root).removeprefix(f"gs://{gcs_server.bucket}/") + "/"
  names = [n[len(prefix) :].split("/") for n in gcs_server.object_names(prefix)]
  return sorted({int(n[0]) for n in names if n[0].isdigit() and n[-1] == "commit_success.txt"})


def _rows(workdir: epath.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- data


def test_corpus_globs_streams_and_static_shards_in_a_bucket(
  gcs_path, array_record_on_the_server, tmp_path
):
  from albert_flax.tokenization import train_tokenizer
  from pretrain import corpus, create_data, data

  for part in range(2):
    local = _write_corpus(tmp_path / f"part-{part}.txt", docs=30, seed=part)
    epath.Path(local).copy(gcs_path / "corpus" / f"part-{part}.txt")
  (gcs_path / "corpus" / "notes.md").write_text("not matched")
  source = corpus.TextFileSource(f"{gcs_path}/corpus/part-*.txt")
  assert source.files == [f"{gcs_path}/corpus/part-{i}.txt" for i in range(2)]
  docs = list(source.documents(0, None, 0, 1))
  local_docs = list(corpus.TextFileSource(str(tmp_path / "part-*.txt")).documents(0, None, 0, 1))
  assert [d for d, _ in docs] == [d for d, _ in local_docs]
  # A restart seeks to the saved byte offset in the object (ranged reads, no download).
  assert [d for d, _ in source.documents(0, docs[40][1], 0, 1)] == [d for d, _ in docs[41:]]

  model = train_tokenizer(
    [str(tmp_path / "part-0.txt")], 100, str(tmp_path / "spm"), seed=0, hard_vocab_limit=False
  )
  flags = [
    f"--input={gcs_path}/corpus/part-*.txt",
    f"--spm_model={model}",
    f"--output_dir={gcs_path}/shards",
    "--max_seq_length=32",
    "--max_predictions_per_seq=4",
    "--dupe_factor=1",
    "--num_shards=2",
  ]
  info = create_data.main(flags)
  names = sorted(p.name for p in (gcs_path / "shards").iterdir())
  assert names == [
    "pretrain-00000-of-00002.array_record",
    "pretrain-00001-of-00002.array_record",
    "pretraining_data.json",
  ]
  with pytest.raises(FileExistsError, match="already holds 2"):
    create_data.main(flags)
  # Read back from the bucket by array_record itself: every record once per epoch.
  batches = data.make_pretraining_batches(
    None,
    None,
    10,
    32,
    4,
    0,
    static_shards=f"{gcs_path}/shards/*.array_record",
    process_index=0,
    process_count=1,
    num_epochs=1,
    drop_remainder=False,
  )
  with batches:
    got = sum(len(b["input_ids"]) for b in batches)
  assert got == info["num_examples"] > 0


# ----------------------------------------------------------------------------- pretraining


@pytest.fixture(scope="module")
def pretrained(bucket, tmp_path_factory):
  """The uninterrupted pretraining run in the bucket, and the flags that made it."""
  tmp = tmp_path_factory.mktemp("gcs_pretrain")
  for part in range(2):  # a glob over two corpus files in the bucket
    local = _write_corpus(tmp / f"part-{part}.txt", docs=60, seed=part)
    epath.Path(local).copy(bucket / "corpus" / f"part-{part}.txt")
  flags = _small_overrides(f"{bucket}/corpus/part-*.txt")
  flags += [
    f"--config.eval_every_steps={STEPS}",
    "--config.log_every_steps=2",
    f"--config.checkpoint_every_steps={EVERY}",
  ]
  env = _env(tmp / "xla_cache")
  reference = bucket / "reference"
  _run(str(reference), flags, env, tmp / "reference.log")
  return {"workdir": reference, "flags": flags, "env": env, "tmp": tmp}


def test_pretraining_killed_in_a_bucket_resumes_to_the_uninterrupted_result(
  gcs_server, bucket, pretrained
):
  flags, env, tmp = pretrained["flags"], pretrained["env"], pretrained["tmp"]
  resumed = bucket / "resumed"
  log_path = tmp / "resumed.log"
  proc, log = _launch(str(resumed), flags, env, log_path)
  deadline = time.time() + 600
  while not _complete_steps(gcs_server, resumed):
    if proc.poll() is not None or time.time() > deadline:
      proc.kill()
      pytest.fail(f"no checkpoint before the run ended:\n{log_path.read_text()[-4000:]}")
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  log.close()
  killed_at = max(_complete_steps(gcs_server, resumed))
  assert killed_at < STEPS
  assert "params" not in _names(gcs_server, resumed)  # no final model yet
  _run(str(resumed), flags, env, log_path)

  reference = pretrained["workdir"]
  ref_rows, got_rows = _rows(reference), _rows(resumed)
  assert [r["step"] for r in got_rows] == [r["step"] for r in ref_rows]
  assert [r["step"] for r in ref_rows if "split" not in r] == list(range(2, STEPS + 1, 2))
  for ref, got in zip(_comparable(ref_rows), _comparable(got_rows)):
    assert ref.keys() == got.keys()
    for key in ref:
      if isinstance(ref[key], float):
        assert abs(ref[key] - got[key]) <= 1e-5 * max(1.0, abs(ref[key])), (ref["step"], key)
      else:
        assert ref[key] == got[key], (ref["step"], key)

  # Everything in the bucket, nothing beside it: the program's files, TensorBoard's events.
  for name in ("spiece.model", "config.json", "train_config.json", "params", "run_status.json"):
    assert name in _names(gcs_server, reference), (name, _names(gcs_server, reference))
  assert any(n.startswith("events") for n in _names(gcs_server, reference / "tensorboard"))
  _, ref_params = af.from_pretrained(str(reference))
  model, got_params = af.from_pretrained(str(resumed))
  assert model.config.hidden_size == 32
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), ref_params, got_params
  )


# ----------------------------------------------------------------------------- fine-tuning


def test_two_processes_fine_tune_from_and_into_the_bucket(gcs_server, bucket, pretrained, tmp_path):
  local = td.write_sentiment(str(tmp_path / "SST-2"), n_train=24, n_dev=11)
  data = bucket / "glue" / "SST-2"
  for name in ("train.tsv", "dev.tsv"):
    epath.Path(local, name).copy(data / name)
  workdir = bucket / "finetune"
  processes = run_processes(
    "finetune_multiprocess_helper.py",
    2,
    1,
    600,
    checkpoint=pretrained["workdir"],
    data=data,
    workdir=workdir,
    out=tmp_path,
  )
  for code, output in processes:
    assert code == 0, output[-4000:]
  results = [json.loads((tmp_path / f"result_{i}.json").read_text()) for i in range(2)]
  assert results[0]["results"] == results[1]["results"]
  assert set(results[0]["results"]) == {"dev/accuracy", "best_step"}

  # One copy of each file, written by process 0 into the bucket; no temporaries left over.
  assert _names(gcs_server, workdir) == [
    "checkpoints",
    "config_history",
    "eval_results.json",
    "goodput.json",
    "metrics.jsonl",
    "model",
    "predictions",
    "run_status.json",
    "train_config.json",
  ], _names(gcs_server, workdir)
  assert _names(gcs_server, workdir / "predictions") == ["dev_predictions.tsv"]
  assert json.loads((workdir / "eval_results.json").read_text()) == pytest.approx(
    results[0]["results"]
  )
  rows = (workdir / "predictions" / "dev_predictions.tsv").read_text().splitlines()
  assert len(rows) == 1 + 11
  model, params = af.from_pretrained(str(workdir / "model"))
  assert type(model).__name__ == "AlbertForSequenceClassification"
  assert af.load_tokenizer(str(workdir / "model")).vocab_size == model.config.vocab_size
