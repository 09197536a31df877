"""Nothing lost, nothing silent (issue 14): interrupted runs say so, one run per workdir, a
changed config is refused, a finished run says it is finished, unfinished workdirs are not loaded
as models by accident.

The CLI runs are subprocesses of `python -m pretrain` sharing one XLA compilation cache; one run
sequence serves several assertions (each CLI run costs ~20-40 s on a loaded 2-core machine).
"""

import asyncio
import gc
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_pretrain_train import (
  REPO,
  RUN_STEPS,
  _complete_steps,
  _env,
  _launch,
  _rows,
  _small_overrides,
  _wait_for,
  _write_corpus,
)

import albert_flax as af
from albert_flax.train import program, training
from albert_flax.train.checkpoints import TrainCheckpointManager
from albert_flax.train.run_control import config_changes


def _finish(proc, log, log_path, timeout=600):
  try:
    proc.wait(timeout=timeout)
  finally:
    if proc.poll() is None:
      proc.kill()
    log.close()
  return proc.returncode, open(log_path).read()


def test_interrupted_run_locked_workdir_changed_config_and_finished_rerun(tmp_path):
  corpus = _write_corpus(tmp_path / "corpus.txt")
  # Long enough (in steps) that the signal comes before the end; the steps are fast once compiled.
  flags = _small_overrides(corpus) + ["--config.checkpoint_every_steps=4"]
  env = _env(tmp_path / "xla_cache")
  workdir = tmp_path / "run"

  # 1) A run trains; a second run on the same workdir fails at once, naming the holder.
  first_log = tmp_path / "first.txt"
  proc, log = _launch(workdir, flags, env, first_log)
  _wait_for(
    lambda: (
      os.path.exists(workdir / "metrics.jsonl") and any(r["step"] >= 3 for r in _rows(workdir))
    ),
    proc,
    first_log,
  )
  # The first run is held (SIGSTOP) while the second starts, so on a loaded machine it cannot
  # reach its last step before the SIGINT below; its LOCK names a live process all the while.
  proc.send_signal(signal.SIGSTOP)
  try:
    second = subprocess.run(
      [sys.executable, "-m", "pretrain", f"--workdir={workdir}", *flags],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
    )
  finally:
    proc.send_signal(signal.SIGCONT)
  assert second.returncode == program.EXIT_WORKDIR_BUSY, second.stderr[-3000:]
  assert f"process {proc.pid}" in second.stderr and "in use by another run" in second.stderr

  # 2) Ctrl-C (SIGINT) saves a checkpoint, says where it stopped and how to resume, records it,
  # and exits with the "interrupted, resumable" status.
  _wait_for(
    lambda: (
      os.path.exists(workdir / "metrics.jsonl") and any(r["step"] >= 3 for r in _rows(workdir))
    ),
    proc,
    first_log,
  )
  proc.send_signal(signal.SIGINT)
  code, output = _finish(proc, log, first_log)
  assert code == program.EXIT_INTERRUPTED, output[-4000:]
  status = json.loads((workdir / "run_status.json").read_text())
  assert status["status"] == "interrupted" and status["signal"] == "SIGINT"
  stopped = status["step"]
  assert 3 <= stopped < RUN_STEPS and stopped in _complete_steps(workdir)
  assert f"Interrupted at step {stopped}" in output and "Resume with:" in output
  assert "-m pretrain" in output
  assert not os.path.exists(workdir / "LOCK")  # released on the way out

  # 3) The unfinished workdir is not a model: refused, naming the step, unless a step is asked.
  with pytest.raises(
    ValueError, match=f"unfinished pretraining run \\(interrupted, step {stopped}"
  ):
    af.from_pretrained(workdir)
  model, _ = af.from_pretrained(workdir, step="latest")
  assert model.config.hidden_size == 32

  # 4) Resuming with a changed config is refused with the changed keys; safe keys may change.
  changed = subprocess.run(
    [
      sys.executable,
      "-m",
      "pretrain",
      f"--workdir={workdir}",
      *flags,
      "--config.learning_rate=0.5",
      "--config.max_seq_length=16",
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert changed.returncode == program.EXIT_USAGE  # a user's mistake: one line, status 2
  assert "learning_rate: 0.001 -> 0.5" in changed.stderr or "learning_rate" in changed.stderr
  assert "max_seq_length: 32 -> 16" in changed.stderr

  # 5) Resume to the end (a safe key changed), then rerun the finished run: it says so.
  resume_log = tmp_path / "resume.txt"
  proc, log = _launch(workdir, flags + ["--config.log_every_steps=2"], env, resume_log)
  code, output = _finish(proc, log, resume_log)
  assert code == 0, output[-4000:]
  assert (
    f"Pretraining finished at step {RUN_STEPS}" in output
    and "model:" in output
    and "next:" in output
  )
  assert json.loads((workdir / "run_status.json").read_text())["status"] == "finished"
  assert len(os.listdir(workdir / "config_history")) == 2
  again_log = tmp_path / "again.txt"
  proc, log = _launch(workdir, flags, env, again_log)
  code, output = _finish(proc, log, again_log)
  assert code == 0, output[-4000:]
  assert f"finished already (step {RUN_STEPS})" in output and "masked_lm_accuracy" in output


def test_config_changes_lists_unsafe_keys_only():
  old = {"a": 1, "num_train_steps": 10, "log_every_steps": 5, "data": {"x": "p"}}
  new = {"a": 2, "num_train_steps": 20, "log_every_steps": 1, "data": {"x": "q", "y": 1}}
  assert config_changes(old, new, ("log_every_steps",), "num_train_steps") == [
    "a: 1 -> 2",
    "data.x: 'p' -> 'q'",
    "data.y: '<absent>' -> 1",
  ]
  fewer = dict(old, num_train_steps=5)
  assert config_changes(old, fewer, (), "num_train_steps") == ["num_train_steps: 10 -> 5"]


def test_a_key_added_since_the_run_started_is_no_change_at_its_default():
  # A run started before sentence_loss and cross_layer_sharing existed resumes with their
  # defaults (which do what the package did before); a non-default value is a change.
  old = {"num_train_steps": 10, "model_overrides": {"hidden_size": None}}
  defaults = {
    "num_train_steps": 10,
    "sentence_loss": "sop",
    "model_overrides": {"hidden_size": None, "cross_layer_sharing": None},
  }
  assert config_changes(old, defaults, (), "num_train_steps", defaults) == []
  nsp = dict(defaults, sentence_loss="nsp")
  assert config_changes(old, nsp, (), "num_train_steps", defaults) == [
    "sentence_loss: '<absent>' -> 'nsp'"
  ]
  assert config_changes(old, defaults, (), "num_train_steps") == [
    "model_overrides.cross_layer_sharing: '<absent>' -> None",
    "sentence_loss: '<absent>' -> 'sop'",
  ]


# ------------------------------------------------------------------------------ integrity


def _tiny_model():
  config = af.AlbertConfig.preset(
    "tiny", vocab_size=50, hidden_size=16, embedding_size=8, intermediate_size=32,
    num_attention_heads=2, num_hidden_layers=1,
  )  # fmt: skip
  model = af.AlbertForSequenceClassification(config)
  params = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
  return model, nn.meta.unbox(params)


def _flip_bytes_in_largest_data_file(directory, count=64):
  """Flip `count` bytes in the middle of the largest array data file of an orbax checkpoint
  (OCDBT keeps them in folders named `d`). Not the largest file of any kind: that is sometimes
  the JSON `_METADATA`, which then fails to parse instead of failing the integrity check."""
  files = [os.path.join(r, n) for r, _, names in os.walk(directory) for n in names]
  data_files = [f for f in files if os.path.basename(os.path.dirname(f)) == "d"]
  assert data_files, f"no array data files (in folders named d) under {directory}: {files}"
  path = max(data_files, key=os.path.getsize)
  data = bytearray(open(path, "rb").read())
  middle = len(data) // 2
  for i in range(middle, middle + count):
    data[i] ^= 0x5A
  open(path, "wb").write(bytes(data))


def test_flipped_bytes_in_a_saved_model_are_an_error_naming_the_array(tmp_path):
  model, params = _tiny_model()
  af.save_pretrained(tmp_path, model, params, format="orbax")
  assert os.path.isfile(tmp_path / "integrity.json")
  _flip_bytes_in_largest_data_file(tmp_path / "params")
  with pytest.raises(ValueError, match=r"fails its integrity check.*albert/"):
    af.from_pretrained(tmp_path)


def test_non_finite_weights_are_rejected_on_load(tmp_path):
  model, params = _tiny_model()
  params["classifier"]["bias"] = params["classifier"]["bias"].at[0].set(jnp.nan)
  af.save_pretrained(tmp_path, model, params, format="hf")
  with pytest.raises(ValueError, match="non-finite weights.*classifier.bias"):
    af.from_pretrained(tmp_path)


def test_training_resume_skips_a_checkpoint_failing_its_integrity_check(tmp_path, caplog):
  mesh_sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def state(value):
    return training.TrainState(
      step=jnp.asarray(value, jnp.int32),
      params={"w": jnp.arange(4096, dtype=jnp.float32) * value},
      opt_state={"mu": jnp.full((8,), -float(value))},
    )

  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=mesh_sharding), state(0)
  )
  directory = str(tmp_path / "checkpoints")
  with TrainCheckpointManager(directory, max_to_keep=3) as manager:
    for step in (2, 4):
      manager.save(step, state(step), {"at": step})
  _flip_bytes_in_largest_data_file(os.path.join(directory, "4", "state"), count=16)
  with TrainCheckpointManager(directory) as manager, caplog.at_level(logging.WARNING):
    restored, data_state, step = manager.restore(abstract)
  assert step == 2 and data_state == {"at": 2}
  np.testing.assert_array_equal(restored.params["w"], np.arange(4096) * 2.0)
  assert "step 4" in caplog.text and "integrity check" in caplog.text and "params/w" in caplog.text
  # The loader applies the same rule to a workdir's checkpoints (step="latest" skips it too).


# ------------------------------------------------------------------------------ corpora


def test_corpora_as_they_come(tmp_path, caplog):
  from pretrain import corpus
  from pretrain import train as pretrain_train
  from pretrain.configs import tiny

  good = tmp_path / "a.txt"
  good.write_text("One sentence here.\nAnother one.\n\nA second document.\n")
  for name in ("b.txt", "c.txt"):
    (tmp_path / name).write_bytes(b"")
  # Empty files among real ones are skipped with one warning giving their count.
  with caplog.at_level(logging.WARNING):
    source = corpus.TextFileSource(str(tmp_path / "*.txt"))
  assert source.files == [str(good)]
  assert "skipping 2 empty input file(s) of 3" in caplog.text
  # Nothing left: an error.
  with pytest.raises(ValueError, match="all 2 input file"):
    corpus.TextFileSource(f"{tmp_path / 'b.txt'},{tmp_path / 'c.txt'}")
  # NUL bytes are not text.
  (tmp_path / "zeros.bin").write_bytes(b"\0" * 4096)
  with pytest.raises(ValueError, match="zeros.bin.*not text.*NUL"):
    corpus.TextFileSource(str(tmp_path / "zeros.bin"))
  # A whitespace-only corpus names the user's files, not a temporary file.
  blank = tmp_path / "blank.txt"
  blank.write_text("   \n\n \t \n")
  config = tiny.get_config()
  config.data.train_files = str(blank)
  with pytest.raises(ValueError, match=f"holds no text.*{blank}"):
    pretrain_train._training_documents_file(config, str(tmp_path))


# ------------------------------------------------------------------------------ errors


def test_errors_a_user_can_act_on(tmp_path):
  import finetune_testdata as td

  from finetune.configs import glue
  from finetune.tasks import get_task
  from finetune.train import resolve_config
  from pretrain import train as pretrain_train
  from pretrain.configs import tiny

  # A mistyped GLUE task is named (not "learning_rate is not set").
  config = glue.get_config()
  config.init_from = "x"
  config.task = "sst-2"
  with pytest.raises(ValueError, match=r"unknown task 'sst-2': choose one of \[.*'sst2'"):
    resolve_config(config)
  # A header-only train.tsv is named.
  data = td.write_sentiment(str(tmp_path / "SST-2"), n_train=0, n_dev=2)
  config.task, config.data_dir = "sst2", data
  task = get_task(resolve_config(config), af.AlbertTokenizer(td.make_tokenizer(str(tmp_path))))
  with pytest.raises(ValueError, match=f"{data}/train.tsv holds no training examples"):
    task.train_features()
  # A preset typo is caught by the config check, before any tokenizer training.
  config = tiny.get_config()
  config.model = "basev2"
  with pytest.raises(ValueError, match="model must be one of .*got 'basev2'"):
    pretrain_train.validate_config(config)


GLUE = "--config=finetune/configs/glue.py"
UNKNOWN_KEY = "unknown config key 'no_such_key' in --config.no_such_key=1"


@pytest.mark.parametrize(
  "command, message",
  [
    (["pretrain", "--config.no_such_key=1"], UNKNOWN_KEY),
    (["finetune", GLUE, "--config.no_such_key=1"], UNKNOWN_KEY),
    (["pretrain", "--config.model=basev2"], "model must be one of ['base-v1', "),
    (["pretrain", "--config.max_seq_length=1024"], "max_seq_length 1024 exceeds the model's"),
    (["finetune", GLUE, "--config.task=sst-2", "--config.init_from=x"], "unknown task 'sst-2'"),
    (
      ["finetune", GLUE, "--config.task=sst2", "--config.init_from=/no/such/run"],
      "init_from '/no/such/run': no such file or directory",
    ),
  ],
)
def test_bad_config_keys_and_values_are_one_line_before_any_work(tmp_path, command, message):
  """Reported in one line with the usage status, before the workdir is taken or any tokenizer
  trained or data read (the preset typo used to surface after minutes of tokenizer training)."""
  workdir = tmp_path / "run"
  out = subprocess.run(
    [sys.executable, "-m", command[0], f"--workdir={workdir}", *command[1:]],
    cwd=REPO,
    env=dict(os.environ, PYTHONPATH=REPO),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == program.EXIT_USAGE, out.stderr[-2000:]
  assert "Traceback" not in out.stderr, out.stderr[-2000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]
  assert not workdir.exists()


def test_workdir_lock_detects_stale_holders_and_is_released(tmp_path, caplog):
  import ml_collections

  from albert_flax.train.run_control import WorkdirRun

  config = ml_collections.ConfigDict({"num_train_steps": 3, "learning_rate": 0.1})
  lock = tmp_path / "LOCK"
  # A lock left by a process that is gone (SIGKILL) is stale: taken over with a warning.
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  lock.write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid}))
  with caplog.at_level(logging.WARNING), WorkdirRun(str(tmp_path), config):
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    # While held, a second run fails at once, naming the holder.
    with pytest.raises(program.WorkdirBusyError, match=f"process {os.getpid()} on"):
      WorkdirRun(str(tmp_path), config).__enter__()
  assert "stale lock" in caplog.text
  assert not lock.exists()  # released on exit
  # Released on an error too.
  with pytest.raises(RuntimeError), WorkdirRun(str(tmp_path), config):
    raise RuntimeError("boom")
  assert not lock.exists()


def test_a_fallback_over_an_unreadable_checkpoint_is_one_log_line(tmp_path, caplog, monkeypatch):
  """Missing array files make orbax abort its reads; what is left of them fails later, when it is
  collected (dozens of tracebacks; how many, and of which kind, depends on timing): tensorstore
  callbacks firing after their event loop has closed ("Event loop is closed", through Python's
  unraisable-exception hook), reads of the other arrays failing after the restore did (asyncio's
  "Task/Future exception was never retrieved"), orbax's read coroutines collected while suspended
  (they turn the GeneratorExit of their closing into an error naming the array's file: unraisable).
  The programs' start-up (program.start) drops those: the fallback's one warning line remains."""
  reached = []  # what gets past the programs' filter to the previous hook
  monkeypatch.setattr(sys, "unraisablehook", reached.append)
  monkeypatch.setattr(logging.getLogger("asyncio"), "filters", [])
  program._quiet_asyncio_after_fallback()

  def state(value):  # many arrays: many aborted reads
    return {f"w{i}": jnp.full((64, 3), float(value)) for i in range(40)}

  one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one_device), state(0)
  )
  directory = str(tmp_path / "checkpoints")
  with TrainCheckpointManager(directory) as manager:
    for step in (2, 4):
      manager.save(step, state(step), {"at": step})
  for root, _, files in os.walk(os.path.join(directory, "4", "state", "d")):
    for name in files:
      os.remove(os.path.join(root, name))
  with TrainCheckpointManager(directory) as manager, caplog.at_level(logging.WARNING):
    assert manager.restore(abstract)[2] == 2
    time.sleep(0.5)  # the aborted reads' callbacks fire now, if at all
    gc.collect()
  fallback = [r for r in caplog.records if "cannot be restored" in r.getMessage()]
  assert len(fallback) == 1 and "step 4" in fallback[0].getMessage(), caplog.text
  assert "Event loop is closed" not in caplog.text and "never retrieved" not in caplog.text
  assert reached == []

  # The timing decides which noise came this time; each path is checked directly, each time
  # with an error that is not noise beside it, which must still come through.
  unreadable = os.path.join(directory, "4", "state", "d", "5f55a19a")  # as tensorstore names it
  elsewhere = os.path.join(str(tmp_path), "other", "4", "state", "d", "5f55a19a")
  # Unraisable: a closed-loop error, and orbax's way of closing a suspended read coroutine.
  closed, other = RuntimeError("Event loop is closed"), ValueError("something else")
  for error in (closed, other):
    _RaisesWhenCollected(error)  # collected at once: Python hands `error` to the hook
  for path in (unreadable, elsewhere):
    _collect_suspended(_read_like_orbax(path))
  assert [str(u.exc_value) for u in reached] == [str(other), f"error while reading {elsewhere}"]
  # Never retrieved (a task's or a future's exception): dropped when it names the checkpoint.
  caplog.clear()
  with caplog.at_level(logging.ERROR, logger="asyncio"):
    for path in (unreadable, elsewhere):
      for make in (_failed_task, _failed_future):
        make(ValueError(f'NOT_FOUND: Error reading local file "{path}"'))
  unretrieved = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
  assert len(unretrieved) == 2 and all(elsewhere in m for m in unretrieved), caplog.text


async def _read_like_orbax(path: str) -> None:
  """orbax's `_read_array_index_and_device_put`: any BaseException while reading, GeneratorExit
  included, becomes an Exception naming the file."""
  try:
    await asyncio.sleep(3600)
  except BaseException as e:
    raise Exception(f"error while reading {path}") from e


def _collect_suspended(coroutine) -> None:
  """Start `coroutine` on a loop, leave it suspended, drop it: Python closes it when collected."""
  loop = asyncio.new_event_loop()
  task = loop.create_task(coroutine)
  loop.run_until_complete(asyncio.sleep(0.01))
  loop.close()  # the task stays pending with its suspended coroutine
  del task, coroutine
  gc.collect()


def _failed_task(error: Exception) -> None:
  async def read():
    raise error

  loop = asyncio.new_event_loop()
  task = loop.create_task(read())
  loop.run_until_complete(asyncio.sleep(0.01))
  assert task.done()  # failed; its exception is never retrieved
  del task
  gc.collect()
  loop.close()


def _failed_future(error: Exception) -> None:
  loop = asyncio.new_event_loop()
  future = loop.create_future()
  future.set_exception(error)
  del future
  gc.collect()
  loop.close()


class _RaisesWhenCollected:
  """An object whose finalizer raises: the interpreter's way to an unraisable error."""

  def __init__(self, error: Exception):
    self.error = error

  def __del__(self):
    raise self.error


def test_finetune_command_interrupted_by_sigint_and_sigterm_saves_says_so_and_resumes(tmp_path):
  import finetune_testdata as td

  (tmp_path / "pretrained").mkdir()
  checkpoint = td.tiny_checkpoint(tmp_path / "pretrained")
  data = td.write_sentiment(str(tmp_path / "SST-2"), n_train=64, n_dev=8)
  workdir = tmp_path / "run"
  # Steps take milliseconds here: enough of them that a signal sent a few steps in (the log is
  # polled every 0.02 s) always lands well before the last one, even on a loaded machine.
  steps = 240
  command = [
    sys.executable, "-m", "finetune", GLUE, f"--workdir={workdir}", "--config.task=sst2",
    f"--config.init_from={checkpoint}", f"--config.data_dir={data}",
    "--config.max_seq_length=16", "--config.batch_size=8", "--config.eval_batch_size=8",
    f"--config.train_steps={steps}", "--config.warmup_steps=1", "--config.learning_rate=1e-3",
    "--config.eval_every_steps=120", "--config.log_every_steps=1", "--config.tensorboard=False",
  ]  # fmt: skip
  env = _env(tmp_path / "xla_cache")
  resumed_at = 0
  for run, name in enumerate(("SIGINT", "SIGTERM", None)):
    log_path = tmp_path / f"run{run}.txt"
    log = open(log_path, "w")
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def logged_steps(path=log_path):
      return [int(s) for s in re.findall(rf"\] step (\d+)/{steps}:", path.read_text())]

    if resumed_at:
      _wait_for(lambda: logged_steps(), proc, log_path)  # noqa: B023 (called in this iteration)
      assert f"resuming at step {resumed_at}" in log_path.read_text()
      assert logged_steps()[0] == resumed_at + 1
    if name is None:
      code, output = _finish(proc, log, log_path)
      assert code == program.EXIT_OK, output[-4000:]
      break
    # Once training is under way (past the first step's compilation), the signal.
    _wait_for(
      lambda: max(logged_steps(), default=0) >= resumed_at + 3,  # noqa: B023
      proc,
      log_path,
      interval=0.02,
    )
    proc.send_signal(getattr(signal, name))
    code, output = _finish(proc, log, log_path)
    assert code == program.EXIT_INTERRUPTED, output[-4000:]
    status = json.loads((workdir / "run_status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == name, status
    resumed_at = status["step"]
    assert resumed_at == logged_steps()[-1] < steps, (status, logged_steps())
    assert f"Interrupted at step {resumed_at} ({name})" in output, output[-4000:]
    assert "Resume with:" in output and "-m finetune" in output
    assert os.path.isdir(workdir / "checkpoints" / "latest" / str(resumed_at))
    assert not (workdir / "eval_results.json").exists()
  assert "Fine-tuning finished." in output and "model:" in output
  assert json.loads((workdir / "run_status.json").read_text())["status"] == "finished"
  assert (workdir / "eval_results.json").exists() and (workdir / "model").is_dir()
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in rows if "split" not in r] == list(range(1, steps + 1))
