"""The library on gs://, against a local Cloud Storage server (tests/gcs_server.py): saved models,
tokenizers, training checkpoints, the workdir lock and status, metric files and TensorBoard.

Each test checks what the server holds (its own listing, or bytes read back through another
route), so a write that went to the local disk or stayed in a client cache fails.
"""

from __future__ import annotations

import json
import logging
import os
import struct

import finetune_testdata as td
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import sentencepiece as spm
from flax import traverse_util

import albert_flax as af
from albert_flax import paths
from albert_flax import workdir as layout
from albert_flax.checkpoints import expected_shapes
from albert_flax.train import program, training
from albert_flax.train.checkpoints import TrainCheckpointManager
from albert_flax.train.metric_writers import MetricWriter
from albert_flax.train.run_control import WorkdirRun


def _names(server, directory) -> list[str]:
  """The object names under `directory` (a gs:// epath.Path), relative to it."""
  prefix = os.fspath(directory).removeprefix(f"gs://{server.bucket}/") + "/"
  return [n.removeprefix(prefix) for n in server.object_names(prefix)]


@pytest.fixture(scope="module")
def spiece(tmp_path_factory) -> str:
  return td.make_tokenizer(str(tmp_path_factory.mktemp("spm")))


def _tiny_classifier():
  config = af.AlbertConfig.preset(
    "tiny", vocab_size=120, hidden_size=16, embedding_size=8, intermediate_size=32,
    num_attention_heads=2, num_hidden_layers=2, num_labels=3,
  )  # fmt: skip
  model = af.AlbertForSequenceClassification(config)
  # Random values of the model's shapes: no compilation of init (the machine is small).
  rng = np.random.default_rng(0)
  shapes = expected_shapes(model)
  flat = {
    tuple(p.split("/")): rng.normal(0, 0.2, s.shape).astype(s.dtype) for p, s in shapes.items()
  }
  return model, traverse_util.unflatten_dict(flat)


def test_a_write_by_another_client_is_seen_at_once(gcs_server, gcs_path):
  """Another host (here: google-cloud-storage, another client) adds a file to a folder this
  process has listed: listing, exists() and glob see it (no stale listing cache)."""
  from google.auth.credentials import AnonymousCredentials
  from google.cloud import storage

  (gcs_path / "a.txt").write_text("a")
  assert [p.name for p in gcs_path.iterdir()] == ["a.txt"]
  assert not (gcs_path / "b.txt").exists()
  client = storage.Client(credentials=AnonymousCredentials(), project="test")
  prefix = os.fspath(gcs_path).removeprefix(f"gs://{gcs_server.bucket}/")
  client.bucket(gcs_server.bucket).blob(f"{prefix}/b.txt").upload_from_string(b"b")
  assert sorted(p.name for p in gcs_path.iterdir()) == ["a.txt", "b.txt"]
  assert (gcs_path / "b.txt").exists()
  assert paths.glob(os.fspath(gcs_path / "*.txt")) == [
    os.fspath(gcs_path / "a.txt"),
    os.fspath(gcs_path / "b.txt"),
  ]


# ------------------------------------------------------------------------- saved models


def test_save_and_load_a_model_with_its_tokenizer_in_a_bucket(gcs_server, gcs_path, spiece):
  model, params = _tiny_classifier()
  tokenizer = af.AlbertTokenizer(spiece)
  af.save_pretrained(gcs_path / "model", model, params, tokenizer=tokenizer)
  names = _names(gcs_server, gcs_path / "model")
  for expected in ("config.json", "integrity.json", "spiece.model", "tokenizer_config.json"):
    assert expected in names, names
  assert any(n.startswith("params/") for n in names), names
  assert "<!-- model card written by albert-flax -->" in paths.read_text(
    gcs_path / "model" / "README.md"
  )

  loaded_model, loaded = af.from_pretrained(os.fspath(gcs_path / "model"))  # the saved class
  assert type(loaded_model).__name__ == "AlbertForSequenceClassification"
  assert loaded_model.config == model.config
  enc = tokenizer(["a b c", "d"], padding="max_length", max_length=8, return_tensors="np")
  logits = jax.jit(lambda p, ids, mask: model.apply({"params": p}, ids, attention_mask=mask).logits)
  expected = logits(params, enc["input_ids"], enc["attention_mask"])
  got = logits(loaded, enc["input_ids"], enc["attention_mask"])
  np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))

  reloaded = af.load_tokenizer(os.fspath(gcs_path / "model"))
  assert isinstance(reloaded, af.AlbertTokenizer)
  assert (
    reloaded(["Ünïcödé café, 1,000"])["input_ids"]
    == tokenizer(["Ünïcödé café, 1,000"])["input_ids"]
  )
  # The integrity record in the bucket is checked: a changed fingerprint is an error.
  record = paths.read_json(gcs_path / "model" / "integrity.json")
  name = sorted(record)[0]
  record[name] = (int(record[name]) + 1) % 2**32
  paths.write_json(gcs_path / "model" / "integrity.json", record)
  with pytest.raises(ValueError, match="fails its integrity check"):
    af.from_pretrained(os.fspath(gcs_path / "model"))


def test_transformers_format_and_a_tokenizer_file_in_a_bucket(gcs_server, gcs_path, spiece):
  model, params = _tiny_classifier()
  (gcs_path / "spiece.model").write_bytes(open(spiece, "rb").read())
  # A tokenizer file in the bucket, copied next to the weights.
  af.save_pretrained(
    gcs_path / "hf", model, params, format="hf", tokenizer=gcs_path / "spiece.model"
  )
  names = _names(gcs_server, gcs_path / "hf")
  assert {"config.json", "model.safetensors", "spiece.model", "README.md"} <= set(names), names
  _, loaded = af.from_pretrained(os.fspath(gcs_path / "hf"), af.AlbertForSequenceClassification)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert af.load_tokenizer(os.fspath(gcs_path / "hf" / "spiece.model")).vocab_size == (
    af.AlbertTokenizer(spiece).vocab_size
  )


def test_original_tf_format_in_a_bucket(gcs_server, gcs_path):
  """TensorFlow's checkpoint reader and writer see local files only (they would reach gs://
  through tf.io.gfile): the files go through a temporary folder."""
  model, params = _tiny_classifier()
  af.save_pretrained(gcs_path / "tf", model, params, format="tf")
  names = _names(gcs_server, gcs_path / "tf")
  assert {"albert_config.json", "checkpoint", "model.ckpt-0.index"} <= set(names), names
  assert any(n.startswith("model.ckpt-0.data-") for n in names), names
  _, loaded = af.from_pretrained(os.fspath(gcs_path / "tf"), af.AlbertForSequenceClassification)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_wordpiece_vocabulary_in_a_bucket(gcs_server, gcs_path, tmp_path):
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "中", "国", "人", "hello", "##s"]
  (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
  tokenizer = af.WordPieceTokenizer(str(tmp_path / "vocab.txt"))
  tokenizer.save_pretrained(gcs_path / "zh")
  assert _names(gcs_server, gcs_path / "zh") == ["tokenizer_config.json", "vocab.txt"]
  reloaded = af.load_tokenizer(os.fspath(gcs_path / "zh"))
  assert isinstance(reloaded, af.WordPieceTokenizer)
  assert reloaded(["中国人 hellos"])["input_ids"] == [[2, 5, 6, 7, 8, 9, 3]]


def test_tokenizers_trained_from_and_into_a_bucket(gcs_server, gcs_path, tmp_path):
  """A corpus glob in the bucket (streamed), the model written to the bucket: the same model as
  from the same files on disk."""
  import random

  rng = random.Random(0)
  for k in range(2):
    text = "".join(td.sentence(rng, 10).capitalize() + ".\n" for _ in range(150))
    (tmp_path / f"part{k}.txt").write_text(text, encoding="utf-8")
    (gcs_path / "corpus" / f"part{k}.txt").write_text(text)
  local = af.train_tokenizer(
    str(tmp_path / "part*.txt"), 100, str(tmp_path / "spm" / "spiece"),
    hard_vocab_limit=False, num_threads=1,
  )  # fmt: skip
  remote = af.train_tokenizer(
    os.fspath(gcs_path / "corpus" / "part*.txt"), 100, gcs_path / "vocab" / "spiece",
    hard_vocab_limit=False, num_threads=1,
  )  # fmt: skip
  assert remote == os.fspath(gcs_path / "vocab" / "spiece.model")
  assert _names(gcs_server, gcs_path / "vocab") == ["spiece.model", "spiece.vocab"]
  # The same pieces and scores (the files differ in the model_prefix the trainer records).
  local_sp = spm.SentencePieceProcessor(model_file=local)
  remote_sp = spm.SentencePieceProcessor(model_proto=paths.path(remote).read_bytes())
  assert remote_sp.get_piece_size() == local_sp.get_piece_size() > 50
  for i in range(local_sp.get_piece_size()):
    assert remote_sp.id_to_piece(i) == local_sp.id_to_piece(i)
    assert remote_sp.get_score(i) == local_sp.get_score(i)

  vocab = af.train_wordpiece_vocab(
    os.fspath(gcs_path / "corpus" / "*.txt"), 60, os.fspath(gcs_path / "wp" / "vocab.txt")
  )
  tokens = paths.read_text(vocab).splitlines()
  assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(tokens) > 20


# ------------------------------------------------------------------ training machinery


def _state(value):
  return training.TrainState(
    step=jnp.asarray(value, jnp.int32),
    params={"w": jnp.arange(512, dtype=jnp.float32) * value},
    opt_state={"mu": jnp.full((8,), -float(value))},
  )


def test_train_checkpoints_save_restore_and_fall_back_in_a_bucket(gcs_server, gcs_path, caplog):
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), _state(0)
  )
  directory = gcs_path / "checkpoints"
  with TrainCheckpointManager(os.fspath(directory), max_to_keep=2) as manager:
    for step in (2, 4, 6):
      manager.save(step, _state(step), {"at": step})
  names = _names(gcs_server, directory)
  assert {n.split("/")[0] for n in names} == {"4", "6"}, names  # max_to_keep=2 in the bucket
  with TrainCheckpointManager(os.fspath(directory)) as manager:
    restored, data_state, step = manager.restore(abstract)
  assert step == 6 and data_state == {"at": 6}
  np.testing.assert_array_equal(restored.params["w"], np.arange(512) * 6.0)

  # A newest checkpoint whose integrity record disagrees is set aside; the previous one is used.
  record_files = [n for n in names if n.startswith("6/integrity/") and n.endswith("metadata")]
  assert len(record_files) == 1, names
  record_file = directory / record_files[0]
  record = paths.read_json(record_file)
  record["params/w"] = (int(record["params/w"]) + 1) % 2**32
  paths.write_json(record_file, record)
  with TrainCheckpointManager(os.fspath(directory)) as manager, caplog.at_level(logging.WARNING):
    restored, data_state, step = manager.restore(abstract)
  assert step == 4 and data_state == {"at": 4}
  np.testing.assert_array_equal(restored.params["w"], np.arange(512) * 4.0)
  assert "integrity check" in caplog.text and "params/w" in caplog.text
  assert {n.split("/")[0] for n in _names(gcs_server, directory)} == {"4"}
  assert _names(gcs_server, gcs_path / "checkpoints.corrupt")[0].startswith("6/")


def test_two_processes_checkpoint_into_one_bucket(gcs_server, gcs_path):
  """jax.distributed over gloo: each process writes its shards of a sharded array into the bucket
  (through tensorstore), two managers at once; both restore what was saved
  (tests/checkpoint_multiprocess_helper.py)."""
  from multiprocess_launch import run_processes

  results = run_processes("checkpoint_multiprocess_helper.py", 2, 1, 300, workdir=gcs_path, steps=3)
  for code, output in results:
    assert code == 0 and output.rstrip().endswith("OK"), output[-4000:]
  names = _names(gcs_server, gcs_path)
  assert {n.split("/")[1] for n in names if n.startswith("latest/")} == {"2", "3"}, names
  assert any("ocdbt.process_1" in n for n in names), names  # the second process's shards


def test_workdir_lock_status_and_config_in_a_bucket(gcs_server, gcs_path):
  config = ml_collections.ConfigDict({"num_train_steps": 3, "learning_rate": 0.1})
  workdir = os.fspath(gcs_path / "run")
  with WorkdirRun(workdir, config) as run:
    holder = paths.read_json(gcs_path / "run" / "LOCK")
    assert holder["pid"] == os.getpid()
    # While held, a second run is refused at once, naming the holder (the create-if-absent
    # precondition failed on the server).
    with pytest.raises(program.WorkdirBusyError, match=f"process {os.getpid()} on"):
      WorkdirRun(workdir, config).__enter__()
    run.mark_finished(3, 3, {"loss": 0.5})
  names = _names(gcs_server, gcs_path / "run")
  assert "LOCK" not in names  # released
  assert {"run_status.json", "train_config.json", "config_history/0000.json"} <= set(names)
  assert layout.read_run_status(workdir)["status"] == "finished"
  # A rerun with a changed config is refused from what the bucket holds.
  changed = ml_collections.ConfigDict({"num_train_steps": 3, "learning_rate": 0.2})
  with pytest.raises(ValueError, match="learning_rate: 0.1 -> 0.2"):
    WorkdirRun(workdir, changed).__enter__()
  # A lock another host holds is not taken over.
  paths.write_json(gcs_path / "run" / "LOCK", {"host": "other-host", "pid": 1})
  with pytest.raises(program.WorkdirBusyError, match="process 1 on other-host"):
    WorkdirRun(workdir, config).__enter__()


def test_of_racing_lock_takers_exactly_one_wins(gcs_path):
  """create_new is one create-if-absent request: of 8 threads creating the same object at once,
  one succeeds and its content is the one kept."""
  from concurrent.futures import ThreadPoolExecutor

  lock = gcs_path / "LOCK"
  with ThreadPoolExecutor(8) as pool:
    won = list(pool.map(lambda i: paths.create_new(lock, str(i).encode()), range(8)))
  assert won.count(True) == 1, won
  assert paths.read_text(lock) == str(won.index(True))


def _scalars(event_file: bytes) -> list[tuple[str, int, float]]:
  """(tag, step, value) of every scalar in a TensorBoard event file (TFRecord framing)."""
  from tensorboardX.proto.event_pb2 import Event

  out, pos = [], 0
  while pos < len(event_file):
    (length,) = struct.unpack("<Q", event_file[pos : pos + 8])
    event = Event.FromString(event_file[pos + 12 : pos + 12 + length])
    pos += 12 + length + 4
    for value in event.summary.value:
      out.append((value.tag, event.step, round(value.simple_value, 6)))
  return out


def test_metric_rows_and_tensorboard_in_a_bucket(gcs_server, gcs_path):
  workdir = gcs_path / "run"
  with MetricWriter(os.fspath(workdir), total_steps=30, enabled=True, progress=False) as writer:
    for step in (10, 20, 30):
      writer.write(step, {"loss": 1.0 / step})
      rows = paths.read_text(workdir / "metrics.jsonl").splitlines()
      assert json.loads(rows[-1]) == {"step": step, "loss": 1.0 / step}  # there after each row
    writer.write(30, {"accuracy": 0.5}, split="eval")
  events = [n for n in _names(gcs_server, workdir) if n.startswith("tensorboard/events.out")]
  assert len(events) == 1, events
  assert sorted(_scalars((workdir / events[0]).read_bytes())) == [
    ("eval/accuracy", 30, 0.5),
    ("train/loss", 10, 0.1),
    ("train/loss", 20, 0.05),
    ("train/loss", 30, round(1 / 30, 6)),
  ]
  # A run resumed from step 10 drops the later rows, as locally.
  with MetricWriter(os.fspath(workdir), 30, initial_step=10, enabled=True, progress=False) as w:
    w.write(20, {"loss": 0.25})
  rows = [json.loads(r) for r in paths.read_text(workdir / "metrics.jsonl").splitlines()]
  assert rows == [{"step": 10, "loss": 0.1}, {"step": 20, "loss": 0.25}]
