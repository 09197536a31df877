"""A pretraining run's workdir, and chaos: a run interrupted again and again ends as if it had
never been (issue 14).

One uninterrupted `python -m pretrain` run (the module's `reference` fixture) serves both: its
workdir is checked for what the program promises and continued from, and it is the result the
interrupted runs must reach (one run fewer than a reference per test: ~15-25 s of a 2-core run).

`python -m pretrain` is stopped by SIGKILL, SIGTERM and SIGINT at moments drawn from a seeded
random generator (a number of trained steps plus a fraction of a step), once by SIGKILL while a
checkpoint is being written, and once its two newest checkpoints are damaged while it is down;
each time the same command starts it again. The final metrics and parameters must be those of a
run never interrupted, every start must resume from the newest checkpoint that reads back and
passes its integrity check (saying so in one line for each one it skips), and no log may hold a
traceback (orbax's aborted reads of an unreadable checkpoint used to print dozens).

"While a checkpoint is being written" is hit without timing luck: orbax writes a step into
`<step>.orbax-checkpoint-tmp` and renames it when complete, so the test waits for that folder,
freezes the process (SIGSTOP), checks the folder is still there, and only then kills it.
All runs share one XLA compilation cache, so only the first compiles.
"""

import json
import os
import random
import re
import shutil
import signal
import time

import jax
import numpy as np
import pytest
from test_pretrain_train import (
  RUN_STEPS,
  _comparable,
  _complete_steps,
  _env,
  _launch,
  _rows,
  _run,
  _small_overrides,
  _write_corpus,
)
from test_reliability import _flip_bytes_in_largest_data_file

import albert_flax as af
from albert_flax.train import program

SEED = 14  # the moments of the interruptions; any seed must pass
STEPS = RUN_STEPS  # 48: room for four starts of up to ~12 steps each, whatever the speed
EVERY = 4  # checkpoint_every_steps
EVAL_EVERY = 8
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax's folder for a step still being written


def _trained_steps(log_path) -> list[int]:
  """The steps this process has logged (one log line per step: log_every_steps=1, no tty)."""
  return [int(s) for s in re.findall(rf"\] step (\d+)/{STEPS}:", open(log_path).read())]


def _wait(predicate, proc, log_path, timeout=300, poll=0.01):
  deadline = time.time() + timeout
  while not predicate():
    if proc.poll() is not None or time.time() > deadline:
      proc.kill()
      pytest.fail(f"run ended or hung (code {proc.poll()}):\n{open(log_path).read()[-4000:]}")
    time.sleep(poll)


def _saving(workdir) -> list[str]:
  directory = os.path.join(workdir, "checkpoints")
  return [n for n in os.listdir(directory) if TMP_SUFFIX in n] if os.path.isdir(directory) else []


def _kill_during_save(proc, workdir, log_path) -> None:
  """SIGKILL while a checkpoint is being written (seen in its temporary folder)."""
  while True:
    _wait(lambda: _saving(workdir), proc, log_path, poll=0.002)
    proc.send_signal(signal.SIGSTOP)  # frozen: the folder cannot be renamed under us
    if _saving(workdir):
      proc.send_signal(signal.SIGKILL)
      return
    proc.send_signal(signal.SIGCONT)  # renamed between our look and the stop: the next save


def _interrupt(proc, what, workdir, log_path, first, more_steps, pause) -> None:
  """Send `what` once this start has trained past its first checkpoint (`first`, so the run moves
  on), `more_steps` steps and `pause` seconds later; or kill it during its next save."""

  def trained_past(step):
    return max(_trained_steps(log_path), default=0) >= step

  _wait(
    lambda: trained_past(first) and max(_complete_steps(workdir), default=0) >= first,
    proc,
    log_path,
  )
  _wait(lambda: trained_past(first + more_steps), proc, log_path)
  if what == "SIGKILL during a save":
    _kill_during_save(proc, workdir, log_path)
  else:
    time.sleep(pause)
    proc.send_signal(getattr(signal, what))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """(workdir, flags, env) of one uninterrupted run of the small model, RUN_STEPS (48) steps."""
  tmp = tmp_path_factory.mktemp("reference")
  corpus = _write_corpus(tmp / "corpus.txt", docs=60)
  flags = _small_overrides(corpus) + [
    f"--config.checkpoint_every_steps={EVERY}",
    f"--config.eval_every_steps={EVAL_EVERY}",
  ]
  env = _env(tmp / "xla_cache")
  workdir = tmp / "reference"
  _run(workdir, flags, env, tmp / "reference.log", timeout=600)
  return workdir, flags, env


def test_run_writes_its_workdir_and_continues_from_its_model(reference, tmp_path):
  # In a bucket: tests/test_gcs_programs.py.
  reference, flags, env = reference
  ref_rows = _rows(reference)

  # The workdir holds what the program promises, and the final model loads.
  train_rows = [r for r in ref_rows if "split" not in r]
  eval_rows = [r for r in ref_rows if r.get("split") == "eval"]
  assert [r["step"] for r in train_rows] == list(range(1, RUN_STEPS + 1))
  assert [r["step"] for r in eval_rows] == list(range(EVAL_EVERY, RUN_STEPS + 1, EVAL_EVERY))
  for key in (
    "loss",
    "masked_lm_loss",
    "masked_lm_accuracy",
    "sentence_order_loss",
    "sentence_order_accuracy",
    "learning_rate",
    "examples_per_second",
  ):
    assert key in train_rows[-1]
  for name in ("spiece.model", "config.json", "train_config.json", "params", "tensorboard"):
    assert os.path.exists(os.path.join(reference, name)), name
  assert any(f.startswith("events") for f in os.listdir(os.path.join(reference, "tensorboard")))
  model, ref_params = af.from_pretrained(str(reference))
  assert model.config.hidden_size == 32 and model.config.vocab_size <= 120

  # Continuing pretraining from the final model: its tokenizer is taken along, and one step
  # (learning rate 0 at step 0 of the warm-up) leaves exactly the loaded parameters.
  continued = tmp_path / "continued"
  _run(
    continued,
    flags + [f"--config.init_from={reference}", "--config.num_train_steps=1"],
    env,
    tmp_path / "continued.log",
  )
  assert (continued / "spiece.model").read_bytes() == (reference / "spiece.model").read_bytes()
  _, continued_params = af.from_pretrained(str(continued))
  jax.tree.map(np.testing.assert_array_equal, ref_params, continued_params)


def test_runs_interrupted_at_random_moments_end_as_an_uninterrupted_run(reference, tmp_path):
  rng = random.Random(SEED)
  reference, flags, env = reference

  # Four interruptions in a seeded order; the last is followed by damage to the newest checkpoint.
  plan = ["SIGKILL during a save", "SIGKILL", "SIGTERM", "SIGINT"]
  rng.shuffle(plan)
  workdir = tmp_path / "chaos"
  logs = []
  expected_resume = None  # the step the next start must resume from (None: a fresh start)
  for run, what in enumerate(plan + ["to the end"]):
    log_path = tmp_path / f"run{run}.log"
    logs.append(log_path)
    proc, log = _launch(workdir, flags, env, log_path)
    if what == "to the end":
      assert proc.wait(timeout=600) == 0, log_path.read_text()[-4000:]
    else:
      first = (expected_resume or 0) // EVERY * EVERY + EVERY
      _interrupt(proc, what, workdir, log_path, first, rng.randint(0, 2), rng.uniform(0, 0.05))
      code = proc.wait(timeout=300)
    log.close()
    text = log_path.read_text()
    trained = _trained_steps(log_path)
    where = f"run {run} ({what}):\n{text[-4000:]}"

    # It resumed from the newest checkpoint that passes its integrity check.
    if expected_resume is None:
      assert "resumed from" not in text, where
    else:
      assert f"resumed from the checkpoint at step {expected_resume}" in text, where
      assert trained[0] == expected_resume + 1, where
    assert "Traceback" not in text and "Event loop is closed" not in text, where

    if what == "SIGKILL during a save":
      assert code == -signal.SIGKILL, where
      assert _saving(workdir), where  # the save it cut short is left unfinished
    elif what == "SIGKILL":
      assert code == -signal.SIGKILL, where
    elif what in ("SIGTERM", "SIGINT"):
      # Saved and stopped, saying so; the status records where.
      assert code == program.EXIT_INTERRUPTED, where
      status = json.loads((workdir / "run_status.json").read_text())
      assert status["status"] == "interrupted" and status["signal"] == what, where
      assert f"Interrupted at step {status['step']} ({what})" in text, where
      assert status["step"] == max(_complete_steps(workdir)) == trained[-1] < STEPS, where
      assert not (workdir / "params").exists(), where  # no final model from a stopped run
    if what != "to the end":
      complete = _complete_steps(workdir)
      expected_resume = max(complete)  # (a save cut short is never taken for a complete one)

    if run == len(plan) - 1:
      # Damage the two newest checkpoints: array files gone from the newest (orbax cannot read
      # it), flipped bytes in the next (it reads, but fails its integrity check). The next start
      # must say so in one line each, set them aside and resume from the one before.
      assert len(complete) >= 3, complete
      unreadable, flipped, expected_resume = complete[-1], complete[-2], complete[-3]
      shutil.rmtree(workdir / "checkpoints" / str(unreadable) / "state" / "d")
      _flip_bytes_in_largest_data_file(workdir / "checkpoints" / str(flipped) / "state", count=16)

  final = logs[-1].read_text()
  fallback = [line for line in final.splitlines() if "cannot be restored" in line]
  assert len(fallback) == 2, final[-4000:]
  assert f"step {unreadable}" in fallback[0] and f"step {flipped}" in fallback[1], fallback
  # Flipped bytes mostly decode into wrong values, which only the integrity check catches; where
  # they land in a compressed chunk's framing or an OCDBT node, TensorStore cannot read them.
  assert any(w in fallback[1] for w in ("integrity check", "TensorStore", "OCDBT")), fallback
  for step in (unreadable, flipped):
    assert os.path.isdir(str(workdir / "checkpoints") + f".corrupt/{step}")

  # The same metrics, row for row, and the same final parameters as the uninterrupted run.
  assert _comparable(_rows(workdir)) == _comparable(_rows(reference))
  _, ref_params = af.from_pretrained(str(reference))
  _, got_params = af.from_pretrained(str(workdir))
  jax.tree.map(np.testing.assert_array_equal, ref_params, got_params)
