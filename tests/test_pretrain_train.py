"""The pretraining program: checkpoint fallback, NaN detection, and (a shortened) default run
learning on held-back text; the functions the other modules' `python -m pretrain` runs share (its
workdir, continuing and resuming after interruptions: tests/test_chaos.py).

Runs that must survive a kill are subprocesses of `python -m pretrain`; they share a persistent
XLA compilation cache (in the test's tmp dir), so only the first one compiles.
"""

import json
import logging
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from multiprocess_launch import FAST_COMPILE_XLA_FLAGS

from albert_flax.train import perf, training
from albert_flax.train.checkpoints import TrainCheckpointManager
from pretrain import train as pretrain_train
from pretrain.configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = (
  "the a module function returns value list object class method string file data name "
  "type error default argument number path system time call set new first test line "
  "key item result can is are be when if this that of to in for with by on"
).split()


def _write_corpus(path, docs=120, seed=0):
  """Documents of random sentences, in the original format (blank line between documents)."""
  rs = np.random.RandomState(seed)
  with open(path, "w", encoding="utf-8") as f:
    for _ in range(docs):
      for _ in range(rs.randint(3, 9)):
        words = rs.choice(WORDS, size=rs.randint(4, 12))
        f.write(" ".join(words).capitalize() + ".\n")
      f.write("\n")
  return str(path)


# Every `python -m pretrain` run of the small model below trains this many steps: the learning-rate
# schedule (a function of num_train_steps) is compiled into the train step, so runs of one length
# share one compiled step through the XLA cache and only the first run of the session compiles it
# (a compile costs ~8 s of CPU, a whole cached run ~12 s). 48 leaves tests/test_chaos.py room for
# four interrupted starts.
RUN_STEPS = 48


def _small_overrides(corpus):
  """A small model and short run (flags for `python -m pretrain`)."""
  return [
    f"--config.data.train_files={corpus}",
    "--config.tokenizer.vocab_size=120",
    "--config.model_overrides.hidden_size=32",
    "--config.model_overrides.embedding_size=16",
    "--config.model_overrides.num_attention_heads=2",
    "--config.model_overrides.intermediate_size=64",
    "--config.model_overrides.num_hidden_layers=2",
    f"--config.num_train_steps={RUN_STEPS}",
    "--config.batch_size=8",
    "--config.max_seq_length=32",
    "--config.max_predictions_per_seq=5",
    "--config.warmup_steps=2",
    "--config.log_every_steps=1",
    "--config.checkpoint_every_steps=2",
    "--config.eval_every_steps=6",
    "--config.eval_steps=1",
    "--config.data.eval_fraction=0.2",
  ]


def _env(cache_dir, fast_compile=True):
  """The environment of a `python -m pretrain|finetune` run: one CPU device, as a plain run, and
  (`fast_compile`) the suite's compile-fast XLA flags (tests/multiprocess_launch.py)."""
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  if fast_compile:
    env["XLA_FLAGS"] = FAST_COMPILE_XLA_FLAGS
  env.update(
    # The session's cache (tests/conftest.py) where there is one: the runs of every test share it.
    JAX_COMPILATION_CACHE_DIR=os.environ.get("JAX_COMPILATION_CACHE_DIR", str(cache_dir)),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""),
  )
  return env


def _launch(workdir, flags, env, log_path):
  log = open(log_path, "a")
  return subprocess.Popen(
    [sys.executable, "-m", "pretrain", f"--workdir={workdir}", *flags],
    cwd=REPO,
    env=env,
    stdout=log,
    stderr=subprocess.STDOUT,
  ), log


def _run(workdir, flags, env, log_path, timeout=900):
  proc, log = _launch(workdir, flags, env, log_path)
  try:
    proc.wait(timeout=timeout)
  finally:
    if proc.poll() is None:
      proc.kill()
    log.close()
  assert proc.returncode == 0, open(log_path).read()[-4000:]


def _wait_for(predicate, proc, log_path, timeout=600, interval=0.2):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    if proc.poll() is not None:
      pytest.fail(f"run ended early (code {proc.returncode}):\n{open(log_path).read()[-4000:]}")
    time.sleep(interval)
  proc.kill()
  pytest.fail(f"timed out:\n{open(log_path).read()[-4000:]}")


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _complete_steps(workdir):
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def _comparable(rows):
  """The rows without their timings (albert_flax.train.perf.TIMING_KEYS), which differ between
  two runs of the same computation."""
  return [{k: v for k, v in r.items() if k not in perf.TIMING_KEYS} for r in rows]


# The program's workdir, continuing from its model, interruptions (SIGKILL, SIGTERM, SIGINT, one
# mid-save) and resuming to the uninterrupted result: tests/test_chaos.py, which runs the one
# reference run they share; in a bucket, tests/test_gcs_programs.py.


# ------------------------------------------------------------------------------ checkpoints


def _tiny_state(value):
  return training.TrainState(
    step=jnp.asarray(value, jnp.int32),
    params={"w": jnp.full((4, 3), float(value))},
    opt_state={"mu": jnp.full((4, 3), -float(value))},
  )


def _abstract():
  mesh_sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=mesh_sharding), _tiny_state(0)
  )


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
  directory = str(tmp_path / "checkpoints")
  with TrainCheckpointManager(directory, max_to_keep=3) as manager:
    for step in (2, 4):
      manager.save(step, _tiny_state(step), {"window": step})
  # Damage every file of the newest checkpoint's state (as a crash mid-copy or bad disk would).
  state_dir = os.path.join(directory, "4", "state")
  for root, _, files in os.walk(state_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\0garbage")
  with TrainCheckpointManager(directory) as manager, caplog.at_level(logging.WARNING):
    state, data_state, step = manager.restore(_abstract())
  assert step == 2 and data_state == {"window": 2}
  np.testing.assert_array_equal(state.params["w"], np.full((4, 3), 2.0))
  assert "step 4" in caplog.text and "falling back" in caplog.text
  assert os.path.isdir(directory + ".corrupt/4")  # kept for inspection, out of the way
  # A checkpoint directory being written when the process died (orbax's tmp dir) is ignored.
  os.makedirs(os.path.join(directory, "6.orbax-checkpoint-tmp-123", "state"))
  with TrainCheckpointManager(directory) as manager:
    assert manager.all_steps() == [2]
    assert manager.restore(_abstract())[2] == 2


def test_no_readable_checkpoint_is_an_error(tmp_path):
  directory = str(tmp_path / "checkpoints")
  with TrainCheckpointManager(directory) as manager:
    assert manager.restore(_abstract()) is None  # nothing saved yet: start afresh
    manager.save(2, _tiny_state(2), None)
  for root, _, files in os.walk(os.path.join(directory, "2")):
    for name in files:
      os.remove(os.path.join(root, name))
  with TrainCheckpointManager(directory) as manager:
    with pytest.raises(RuntimeError, match="no checkpoint"):
      manager.restore(_abstract())


# ------------------------------------------------------------------------------ in-process


def _small_config(corpus, steps, **changes):
  c = tiny.get_config()
  c.data.train_files = corpus
  c.data.eval_fraction = 0.2
  c.tokenizer.vocab_size = 120
  c.model_overrides.hidden_size = 32
  c.model_overrides.embedding_size = 16
  c.model_overrides.num_attention_heads = 2
  c.model_overrides.intermediate_size = 64
  c.model_overrides.num_hidden_layers = 2
  c.num_train_steps = steps
  c.batch_size = 8
  c.max_seq_length = 32
  c.max_predictions_per_seq = 5
  c.log_every_steps = 1
  c.eval_steps = 0
  for key, value in changes.items():
    c[key] = value
  return c


def test_nan_loss_stops_with_a_message_and_keeps_checkpoints(tmp_path):
  """A learning rate of 1e6 makes LAMB multiply the weights by ~1e6 per step: the loss turns
  inf/NaN within a few steps, and the run must stop there, never saving the diverged state."""
  corpus = _write_corpus(tmp_path / "corpus.txt")
  config = _small_config(
    corpus, steps=30, learning_rate=1e6, warmup_steps=0, checkpoint_every_steps=1
  )
  workdir = str(tmp_path / "run")
  with pytest.raises(FloatingPointError, match=r"loss is (nan|inf|-inf) at step (\d+)") as info:
    pretrain_train.train_and_evaluate(config, workdir)
  bad_step = int(str(info.value).split(" at step ")[1].split(";")[0])
  steps = _complete_steps(workdir)
  assert steps and max(steps) < bad_step, (steps, bad_step)
  # The diverged step is never logged: every row holds a finite float loss (the writer would
  # write a non-finite one as the string "nan" / "inf", which must not appear either).
  rows = [r for r in _rows(workdir) if "loss" in r]
  assert rows and all(r["step"] < bad_step for r in rows), (rows, bad_step)
  assert all(isinstance(r["loss"], float) and np.isfinite(r["loss"]) for r in rows), rows


def test_config_errors_are_named():
  config = tiny.get_config()
  config.optimizer = "sgd"
  config.batch_size = 0
  with pytest.raises(ValueError, match="optimizer.*batch_size|batch_size.*optimizer"):
    pretrain_train.validate_config(config)


# ------------------------------------------------------------------------------ learning


def test_default_command_learns_on_held_back_text(tmp_path):
  """`python -m pretrain` (the tiny config), shortened: held-back MLM and SOP accuracy end
  well above chance (1/V and 1/2)."""
  workdir = tmp_path / "tiny"
  log_path = tmp_path / "log.txt"
  # 100 steps of batch 64: fully optimized code (a compile-fast step would run ~2x slower).
  env = _env(tmp_path / "xla_cache", fast_compile=False)
  _run(workdir, LEARNING_RUN_FLAGS, env, log_path, timeout=1200)
  eval_rows = [r for r in _rows(workdir) if r.get("split") == "eval"]
  assert [r["step"] for r in eval_rows] == [50, 100]
  first, final = eval_rows
  # Chance: 1/2000 for a masked piece, 1/2 for the sentence order; 512 held-back examples, so
  # 0.55 is more than 2 standard errors above chance (the run is deterministic given the seed;
  # measured here: 0.607 and 0.042 at step 100).
  assert final["masked_lm_accuracy"] > 0.03, eval_rows
  assert final["sentence_order_accuracy"] > 0.55, eval_rows
  assert final["loss"] < first["loss"], eval_rows


# The default config, cut short (see pretrain/README.md for the full run's figures).
LEARNING_RUN_FLAGS = [
  "--config.num_train_steps=100",
  "--config.eval_every_steps=50",
  "--config.checkpoint_every_steps=100",
]


_METRIC_WRITER_CHILD = r"""
import glob, json, os, struct, sys
from albert_flax.train import metric_writers
after_import = "torch" in sys.modules
w = metric_writers.MetricWriter(sys.argv[1], 10, progress=False)
w.write(1, {"loss": 1.5}); w.write(2, {"loss": 3.0}, split="eval"); w.close()
after_writer = "torch" in sys.modules  # also False if a None placeholder had been left behind
from tensorboardX.proto import event_pb2
(path,) = glob.glob(os.path.join(sys.argv[1], "tensorboard", "events*"))
scalars = []
with open(path, "rb") as f:  # TFRecord: u64 length, u32 crc, payload, u32 crc
  while header := f.read(12):
    (n,) = struct.unpack("<Q", header[:8])
    event = event_pb2.Event.FromString(f.read(n)); f.read(4)
    scalars += [[event.step, v.tag, v.simple_value] for v in event.summary.value]
print(json.dumps({"after_import": after_import, "after_writer": after_writer, "scalars": scalars}))
"""


def test_metric_writer_writes_tensorboard_events_without_importing_torch(tmp_path):
  # tensorboardX's package __init__ imports torch when it is installed (~2 s per run, unused).
  out = subprocess.run(
    [sys.executable, "-c", _METRIC_WRITER_CHILD, str(tmp_path)],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 0, out.stderr
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert not got["after_import"] and not got["after_writer"]
  assert got["scalars"] == [[1, "train/loss", 1.5], [2, "eval/loss", 3.0]]
