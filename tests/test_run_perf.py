"""A run seen from inside: per-step rates, TFLOP/s and MFU, goodput over every start, profiles on
request and slow-step warnings (albert_flax.train.perf, goodput, profiling, loop).

One `python -m pretrain` run of the suite's small model (RUN_STEPS steps: its compiled step is in
the shared XLA cache), stopped by SIGTERM and resumed to the end, serves the figures, the goodput
and both ways of asking for a profile; the rest is in-process and compiles nothing of the model.
"""

import glob
import gzip
import json
import logging
import os
import re
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import pytest
import test_pretrain_train as small_run  # the suite's small pretraining runs

from albert_flax import flops
from albert_flax.train import goodput, perf, profiling
from albert_flax.train.loop import TrainLoop
from albert_flax.train.run_control import WorkdirRun

STEPS = small_run.RUN_STEPS
PROFILED = (30, 32)  # --config.profile_steps of the resumed start
REQUESTED = 2  # steps the PROFILE_REQUEST file left before the first start asks for: 2..3


def _traced_steps(trace_dir) -> list[int]:
  """The step numbers of the "train" step annotations in a trace folder (its Chrome trace)."""
  (path,) = glob.glob(os.path.join(trace_dir, "*.trace.json.gz"))
  with gzip.open(path) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  return sorted({int(e["args"]["step_num"]) for e in events if e.get("name") == "train"})


def test_rates_goodput_and_profiles_of_a_run_stopped_by_sigterm_and_resumed(tmp_path):
  corpus = small_run._write_corpus(tmp_path / "corpus.txt")
  flags = small_run._small_overrides(corpus) + ["--config.checkpoint_every_steps=4"]
  env = small_run._env(tmp_path / "xla_cache")
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "PROFILE_REQUEST").write_text(f"{REQUESTED}\n")  # taken at the second step

  # 1) The first start: SIGTERM once a few steps are trained and checkpointed.
  first_log = tmp_path / "first.txt"
  began = time.time()
  proc, log = small_run._launch(workdir, flags, env, first_log)
  small_run._wait_for(
    lambda: (
      os.path.exists(workdir / "metrics.jsonl")
      and any(r["step"] >= 6 for r in small_run._rows(workdir))
      and max(small_run._complete_steps(workdir), default=0) >= 4
    ),
    proc,
    first_log,
  )
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=300) == 75, first_log.read_text()[-4000:]
  log.close()
  durations = [time.time() - began]
  stopped = json.loads((workdir / "run_status.json").read_text())["step"]

  # 2) The resumed start, to the end, with a profile window.
  second_log = tmp_path / "second.txt"
  began = time.time()
  proc, log = small_run._launch(
    workdir, flags + [f"--config.profile_steps={PROFILED[0]}:{PROFILED[1]}"], env, second_log
  )
  assert proc.wait(timeout=600) == 0, second_log.read_text()[-4000:]
  log.close()
  durations.append(time.time() - began)
  first, second = first_log.read_text(), second_log.read_text()

  # Every train row has the figures, and they agree: real tokens/s over the share of positions
  # that are tokens, times the analytic FLOPs per position, is the model TFLOP/s (one device).
  config = json.loads((workdir / "config.json").read_text())
  per_position = flops.model_flops_per_token(
    config["num_hidden_layers"],
    config["hidden_size"],
    config["intermediate_size"],
    32,
    config["embedding_size"],
    config["vocab_size"],
    5,
  )
  train_rows = [r for r in small_run._rows(workdir) if "split" not in r]
  assert [r["step"] for r in train_rows] == list(range(1, STEPS + 1))
  for row in train_rows:
    for key in ("step_time", "examples_per_second", "tokens_per_second", "token_share"):
      assert row[key] > 0, row
    assert 0 < row["token_share"] <= 1 and 0 <= row["input_wait_share"] <= 1, row
    assert row["examples_per_second"] * row["step_time"] == pytest.approx(8), row
    tflops = row["tokens_per_second"] / row["token_share"] * per_position / 1e12
    assert row["tflops_per_device"] == pytest.approx(tflops, rel=1e-9), row
    assert "mfu" not in row and "memory_gib" not in row  # a CPU: no peak, no memory stats
  assert first.count("peak FLOP/s of 'cpu' unknown") == 1, first[-4000:]

  # Goodput: two starts in goodput.json, the totals in run_status.json and a table in each
  # start's log; each start's parts add up to its wall time, which is within the process's.
  record = json.loads((workdir / "goodput.json").read_text())
  starts = record["starts"]
  assert [s["status"] for s in starts] == ["interrupted", "finished"]
  assert [(s["from_step"], s["to_step"]) for s in starts] == [(0, stopped), (stopped, STEPS)]
  for start, duration in zip(starts, durations):
    parts = start["parts"]
    assert set(parts) == set(goodput.PARTS) and min(parts.values()) >= 0, parts
    assert sum(parts.values()) == pytest.approx(start["wall"], rel=0.03), start
    assert 0 < start["wall"] < duration, (start, duration)
    assert parts["productive"] > 0 and parts["compile"] > 0 and parts["checkpoint_save"] > 0
    assert parts["evaluation"] > 0 and parts["input_wait"] > 0, parts
  assert starts[0]["parts"]["restore"] == 0 < starts[1]["parts"]["restore"]
  assert starts[0]["parts"]["profile"] > 0 and starts[1]["parts"]["profile"] > 0
  assert starts[1]["redone_steps"] == 0  # SIGTERM saved the step it stopped at
  totals = json.loads((workdir / "run_status.json").read_text())["goodput"]
  assert totals == record["totals"] and totals["starts"] == 2
  assert totals["wall"] == pytest.approx(sum(s["wall"] for s in starts))
  assert sum(totals["parts"].values()) == pytest.approx(totals["wall"], rel=0.03)
  assert totals["goodput"] == pytest.approx(totals["parts"]["productive"] / totals["wall"])
  assert "goodput over 1 start(s)" in first and "goodput over 2 start(s)" in second
  assert re.search(r"productive +\d+\.\d +\d+\.\d%", second), second[-3000:]

  # Profiles: the request file's steps in the first start, the window in the second; nothing
  # outside them.
  assert not (workdir / "PROFILE_REQUEST").exists()  # taken
  traces = sorted(glob.glob(str(workdir / "tensorboard" / "plugins" / "profile" / "*")))
  assert len(traces) == 2 and glob.glob(os.path.join(traces[0], "*.xplane.pb")), traces
  assert _traced_steps(traces[0]) == list(range(2, REQUESTED + 2))  # from the second step
  assert _traced_steps(traces[1]) == list(range(PROFILED[0], PROFILED[1] + 1))


# --------------------------------------------------------------------------- in-process


def _loop_run(tmp_path, name):
  config = ml_collections.ConfigDict({"num_train_steps": 25})
  return WorkdirRun(tmp_path / name, config)


def test_slow_step_warning_fires_for_an_injected_slow_step_only(tmp_path, caplog):
  """Steps of ~50 ms; step 12 sleeps 1 s more (warned); steps that compile, evaluate or save are
  as slow but for a known reason (not warned), as is anything before the median has 5 steps.
  (Long sleeps and a factor of 6: a loaded machine wakes a 50 ms sleep up to ~50 ms late.)"""
  caplog.set_level(logging.WARNING, logger="albert_flax.train.perf")
  ledger = goodput.GoodputLedger(tmp_path / "slow")
  with _loop_run(tmp_path, "slow") as run:
    with TrainLoop(run, 0, 25, goodput=ledger, slow_step_factor=6.0) as loop:
      for step in loop:
        time.sleep(0.05)
        if step == 12:
          time.sleep(1.0)  # the straggler
        elif step == 16:
          jax.jit(lambda x, s=step: x * s)(jnp.ones(3)).block_until_ready()  # compiles
          time.sleep(1.0)
        elif step == 19:
          with loop.phase("evaluation"):
            time.sleep(1.0)
        elif step == 22:
          with loop.phase("checkpoint_save"):
            time.sleep(1.0)
  slow = [r.getMessage() for r in caplog.records if "slow step" in r.getMessage()]
  assert len(slow) == 1 and re.match(r"slow step 12: 1\.\d+ s", slow[0]), slow
  assert [s for s, _, _ in loop.slow_steps.warnings] == [12]
  parts = loop.goodput_totals["parts"]
  assert parts["evaluation"] >= 1 and parts["checkpoint_save"] >= 1 and parts["compile"] > 0


def test_slow_steps_judged_per_interval_when_steps_are_not_waited_for(tmp_path, caplog):
  caplog.set_level(logging.WARNING, logger="albert_flax.train.perf")
  detector = perf.SlowStepDetector(factor=3.0, min_steps=3)
  assert not any(detector.observe(s, 0.01 + 0.001 * (s % 2)) for s in range(10))
  assert detector.observe(10, 0.05) and not detector.observe(11, 0.05, excluded=True)
  assert not detector.observe(12, 0.011)


def test_lost_time_counts_the_steps_done_again_after_a_kill(tmp_path):
  """A start killed at step 10 (its record last written there) after a checkpoint of step 6:
  the next start redoes steps 7..10, whose productive time is lost."""
  before = {
    "started": "",
    "wall": 20.0,
    "parts": {**dict.fromkeys(goodput.PARTS, 0.0), "productive": 5.0, "other": 15.0},
    "from_step": 0,
    "to_step": 10,
    "status": "running",
  }
  (tmp_path / "goodput.json").write_text(json.dumps({"starts": [before]}))
  ledger = goodput.GoodputLedger(tmp_path)
  ledger.loop_starts(6)
  totals = ledger.close(8, "finished")
  assert totals["redone_steps"] == 4 and totals["starts"] == 2
  assert totals["parts"]["lost_to_interruptions"] == pytest.approx(5.0 * 4 / 10)
  assert totals["parts"]["productive"] == pytest.approx(5.0 - 2.0, abs=0.01)
  assert sum(totals["parts"].values()) == pytest.approx(totals["wall"], rel=1e-6)
  assert len(json.loads((tmp_path / "goodput.json").read_text())["starts"]) == 2


def test_peak_table_and_profile_steps_key():
  assert perf.device_peak_flops("TPU v4") == 275e12
  assert perf.device_peak_flops("TPU v5 lite") == 197e12
  assert perf.device_peak_flops("TPU v3") == 123e12 / 2
  assert perf.device_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
  assert perf.device_peak_flops("NVIDIA H100 PCIe") == 756e12
  assert perf.device_peak_flops("NVIDIA A100-SXM4-40GB") == 312e12
  assert perf.device_peak_flops("NVIDIA L40S") == 362e12
  assert perf.device_peak_flops("cpu") is None
  assert profiling.parse_profile_steps("3:5") == (3, 5)
  assert profiling.parse_profile_steps("") is None
  for bad in ("5:3", "0:2", "3", "a:b"):
    with pytest.raises(ValueError, match="profile_steps must be START:END"):
      profiling.parse_profile_steps(bad)


def test_sigusr1_asks_for_the_next_steps(tmp_path):
  profiler = profiling.StepProfiler(tmp_path, request_steps=3)
  try:
    assert profiler.due(1) is None  # the first step is never traced on request
    assert profiler.due(2) is None
    os.kill(os.getpid(), signal.SIGUSR1)
    assert profiler.due(3) == 5  # steps 3..5
    assert profiler.due(4) is None  # once per signal
  finally:
    profiler.close()
  assert signal.getsignal(signal.SIGUSR1) is not profiler._on_signal  # handler given back
