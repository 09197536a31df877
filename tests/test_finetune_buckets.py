"""Length-bucketed fine-tuning (finetune/buckets.py), small-model defaults and several seeds in
one process (finetune/seeds.py)."""

import itertools
import json
import os
import random

import finetune_testdata as td
import jax
import numpy as np
import pytest

import albert_flax as af
from albert_flax import sharding
from finetune import buckets, seeds
from finetune.configs import glue, ner
from finetune.tasks.glue import GlueTask
from finetune.tasks.ner import NerTask
from finetune.train import (
  make_predict_fn,
  predict_set,
  resolve_config,
  run_buckets,
  train_and_evaluate,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  return td.tiny_checkpoint(tmp_path_factory.mktemp("tiny_albert"))


def _write_varied_sentiment(directory, n_train, n_dev, seed=0):
  """SST-2 format with sentence lengths from 1 to 20 words; label 1 iff "great" appears."""
  rng = random.Random(seed)

  def rows(n):
    out = []
    for _ in range(n):
      label = rng.randrange(2)
      out.append([td.sentence(rng, rng.randint(1, 20), ("great" if label else "awful",)), label])
    return out

  td.write(os.path.join(directory, "train.tsv"), td.tsv(["sentence", "label"], *rows(n_train)))
  td.write(os.path.join(directory, "dev.tsv"), td.tsv(["sentence", "label"], *rows(n_dev)))
  return directory


def _config(module, checkpoint, data_dir, **fields):
  """A short run in length buckets of 16 and 32, logging every step, evaluating every 3."""
  buckets = dict(train_steps=6, log_every_steps=1, eval_every_steps=3, length_buckets=(16, 32))
  return td.run_config(module, checkpoint, data_dir, **{**buckets, **fields})


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


# --------------------------------------------------------------------- batches (no model)


def test_bucket_lengths():
  assert buckets.default_buckets(512) == (32, 64, 128, 256, 512)
  assert buckets.default_buckets(100) == (32, 64, 100)
  assert buckets.default_buckets(16) == (16,)
  assert buckets.resolve_buckets(None, 128) == (32, 64, 128)
  assert buckets.resolve_buckets((), 128) == (128,)
  assert buckets.resolve_buckets((64, 16), 128) == (16, 64, 128)
  with pytest.raises(ValueError, match=r"\[256\] outside \[1, max_seq_length 128\]"):
    buckets.resolve_buckets((32, 256), 128)
  # multiple choice: the longest choice decides; every array shaped like input_ids is cut
  mask = np.zeros((2, 4, 64), np.int32)
  mask[0, :, :5] = 1
  mask[0, 2, :20] = 1
  mask[1, :, :9] = 1
  features = {"input_ids": mask * 7, "attention_mask": mask, "labels": np.array([1, 2])}
  assert buckets.row_lengths(features).tolist() == [20, 9]
  cut = buckets.trim(features, 32)
  assert cut["input_ids"].shape == (2, 4, 32) and cut["labels"].tolist() == [1, 2]


def test_fitted_buckets_are_the_fewest_positions_for_their_count():
  rng = np.random.default_rng(1)
  for _ in range(60):
    max_seq_length = int(rng.choice([16, 40, 100, 128]))
    lengths = rng.integers(1, max_seq_length + 1, int(rng.integers(1, 30)))
    count = int(rng.integers(1, 5))
    fitted = buckets.fit_buckets(lengths, count, max_seq_length)
    top = min(-(-int(lengths.max()) // 8) * 8, max_seq_length)  # holds the longest row
    assert fitted[-1] == max_seq_length and top in fitted
    assert all(w % 8 == 0 for w in fitted if w != max_seq_length)
    assert len([w for w in fitted if w <= top]) <= count
    candidates = [*range(8, top, 8), top]
    fewest = min(
      buckets.padded_positions(lengths, (*chosen, top))
      for k in range(count)
      for chosen in itertools.combinations(candidates[:-1], k)
    )
    assert buckets.padded_positions(lengths, fitted) == fewest, (lengths.tolist(), count, fitted)
  # a width no row needs is not kept; every row fits
  assert buckets.fit_buckets(np.array([3, 3, 3, 50]), 5, 512) == (8, 56, 512)
  assert buckets.fit_buckets(np.array([512, 7]), 3, 512) == (8, 512)
  with pytest.raises(ValueError, match="600 tokens is longer than max_seq_length 512"):
    buckets.fit_buckets(np.array([600]), 3, 512)


def test_default_buckets_fitted_to_the_training_rows():
  """The default (config.length_buckets None): as many widths as powers of two from 32 would
  be, placed where an SST-2-like set's rows are; far fewer positions than those powers."""
  rng = np.random.default_rng(0)
  lengths = np.clip(3 + rng.gamma(2.0, 5.0, 2000).astype(int), 4, 66)  # mean ~13 tokens
  config = glue.get_config()
  config.max_seq_length = 512
  fitted = run_buckets(config, lengths)
  assert fitted == buckets.resolve_buckets(None, 512, lengths)
  assert fitted[-1] == 512 and len(fitted) <= len(buckets.default_buckets(512)) + 1
  powers = buckets.default_buckets(512)
  assert buckets.padded_positions(lengths, fitted) < 0.6 * buckets.padded_positions(lengths, powers)
  assert buckets.token_share(lengths, fitted) > 0.75
  config.length_buckets = (64, 16)
  assert run_buckets(config, lengths) == (16, 64, 512)
  config.length_buckets = ()
  assert run_buckets(config, lengths) is None


def _features(lengths, width=64):
  lengths = np.asarray(lengths)
  mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int32)
  return {
    "input_ids": mask * 5,
    "attention_mask": mask,
    "labels": np.where(mask == 1, 1, -100),  # per token: cut with the inputs
    "row": np.arange(len(lengths)),
  }


@pytest.mark.parametrize("n", [96, 101])
def test_train_batches_one_padded_length_each_epoch_once_and_resume(n):
  rng = np.random.default_rng(0)
  lengths = rng.integers(3, 64, n)
  lengths[:70] = rng.integers(3, 16, 70)  # most rows short, as in GLUE
  features = _features(lengths)
  widths = (16, 32, 64)
  stream = buckets.bucketed_train_batches(features, 8, seed=3, buckets=widths)
  batches = [next(stream) for _ in range(40)]
  mixed = 0
  for batch in batches:
    width = batch["input_ids"].shape[-1]
    rows = lengths[batch["row"]]
    # one padded length per batch: the smallest bucket holding its longest row
    assert width == min(w for w in widths if w >= rows.max())
    assert batch["labels"].shape == (8, width)
    assert (batch["attention_mask"].sum(-1) == rows).all()  # only padding was cut
    mixed += len({min(w for w in widths if w >= r) for r in rows}) > 1
  assert mixed <= 2 * (40 // (n // 8) + 1)  # at most len(buckets) - 1 leftover batches an epoch
  assert len({b["input_ids"].shape[-1] for b in batches}) == 3
  widths_seen = [b["input_ids"].shape[-1] for b in batches[: n // 8]]
  assert widths_seen != sorted(widths_seen)  # an epoch's batches shuffled, not bucket by bucket
  # every example of an epoch is seen exactly once; the rows that fill no batch at the end of
  # an epoch are carried into the next
  per_epoch = n // 8
  first = np.concatenate([b["row"] for b in batches[:per_epoch]])
  assert len(set(first.tolist())) == len(first) == per_epoch * 8
  carried = sorted(set(range(n)) - set(first.tolist()))
  assert len(carried) == n % 8
  next_epoch = batches[per_epoch : per_epoch + (n + len(carried)) // 8]
  second = np.concatenate([b["row"] for b in next_epoch])
  counts = np.bincount(second, minlength=n)
  assert set(np.nonzero(counts == 2)[0].tolist()) <= set(carried) and counts.max() <= 2
  assert len(second) - (n + len(carried)) > -8  # the next epoch carries fewer than a batch
  # batches are a function of (seed, step): a stream started at step 13 replays the rest
  resumed = buckets.bucketed_train_batches(features, 8, seed=3, buckets=widths, start_step=13)
  for batch in batches[13:20]:
    again = next(resumed)
    assert all(np.array_equal(batch[k], again[k]) for k in batch)
  other = buckets.bucketed_train_batches(features, 8, seed=4, buckets=widths)
  assert not np.array_equal(next(other)["row"], batches[0]["row"])
  # the widths compiled ahead are the widths of the run's batches, from any start
  for start, end in ((0, 40), (13, 20), (2, 3)):
    expected = sorted({b["input_ids"].shape[-1] for b in batches[start:end]})
    assert buckets.train_widths(lengths, 8, widths, 3, start, end) == expected, (start, end)


def test_eval_plan_covers_every_row_once():
  lengths = np.random.default_rng(1).integers(1, 64, 45)
  plan = buckets.eval_batch_plan(lengths, 8, (16, 32, 64))
  rows = np.concatenate([p.rows[: p.real] for p in plan])
  assert sorted(rows.tolist()) == list(range(45))
  assert [p.real for p in plan] == [8] * 5 + [5] and all(len(p.rows) == 8 for p in plan)
  assert all(p.width == min(w for w in (16, 32, 64) if w >= lengths[p.rows].max()) for p in plan)
  assert [p.width for p in plan] == sorted(p.width for p in plan)


# --------------------------------------------------------------------- evaluation


def _predict_both_ways(task_class, module, checkpoint, data_dir, widths, **fields):
  config = resolve_config(_config(module, checkpoint, data_dir, **fields))
  tokenizer = af.AlbertTokenizer(os.path.join(checkpoint, "spiece.model"))
  task = task_class(config, tokenizer)
  (dev,) = task.eval_sets(final=False)[:1]
  model, params = af.from_pretrained(checkpoint, task.model_class, **task.model_overrides())
  mesh = sharding.make_mesh(-1, 1, 1)
  predict_fn = make_predict_fn(model, task, None, mesh)
  outputs = {}
  for name, given in (("padded", None), ("bucketed", widths)):
    counter = buckets.CompileCounter()
    outputs[name] = predict_set(
      predict_fn, params, dev, 8, mesh, given, task.sequence_outputs, counter
    )
    outputs[name + "_compiles"] = counter.counts()["compiles/predict"]
  return task, dev, outputs


def test_eval_outputs_equal_with_and_without_buckets_ner(checkpoint, tmp_path):
  data = td.write_conll(str(tmp_path / "conll"), n_dev=30, seed=5)
  task, dev, out = _predict_both_ways(NerTask, ner, checkpoint, data, (8, 16, 64))
  padded, bucketed = out["padded"]["logits"], out["bucketed"]["logits"]
  assert padded.shape == bucketed.shape == (len(dev.features["input_ids"]), 64, len(task.labels))
  np.testing.assert_allclose(bucketed, padded, rtol=1e-5, atol=1e-5)
  assert out["padded_compiles"] == 1 and out["bucketed_compiles"] >= 1
  assert task.score(dev, out["bucketed"])[0] == task.score(dev, out["padded"])[0]
  assert task.score(dev, out["bucketed"])[1] == task.score(dev, out["padded"])[1]


def test_eval_outputs_equal_with_and_without_buckets_glue_pairs(checkpoint, tmp_path):
  rng = random.Random(2)
  rows = [
    [i, td.sentence(rng, rng.randint(1, 14)), td.sentence(rng, rng.randint(1, 8)), label]
    for i, label in enumerate(["entailment", "not_entailment"] * 11)
  ]
  header = ["index", "sentence1", "sentence2", "label"]
  data = str(tmp_path / "RTE")
  for name in ("train.tsv", "dev.tsv"):
    td.write(os.path.join(data, name), td.tsv(header, *rows))
  widths = (16, 24, 32, 64)
  task, dev, out = _predict_both_ways(GlueTask, glue, checkpoint, data, widths, task="rte")
  plan = buckets.eval_batch_plan(buckets.row_lengths(dev.features), 8, widths)
  assert out["bucketed_compiles"] == len({p.width for p in plan}) > 1
  np.testing.assert_allclose(out["bucketed"]["logits"], out["padded"]["logits"], atol=1e-5)
  assert task.score(dev, out["bucketed"])[0] == task.score(dev, out["padded"])[0]


# --------------------------------------------------------------------- training


def test_resume_equals_uninterrupted_with_buckets(checkpoint, tmp_path, monkeypatch):
  """Also: the split run compiles its programs ahead (config.compile_ahead), the whole run at
  first use; results equal, and every step and prediction of the resumed run ran a program
  compiled ahead (none compiled at first use)."""
  from albert_flax.train import training
  from albert_flax.train.checkpoints import PreemptionGuard

  data = _write_varied_sentiment(str(tmp_path / "SST-2"), n_train=40, n_dev=12)
  config = _config(glue, checkpoint, data, task="sst2", compile_ahead=False)
  whole = train_and_evaluate(config, str(tmp_path / "whole"))
  # the same run stopped at step 3 (as by SIGTERM), then rerun
  config.compile_ahead = True
  with monkeypatch.context() as patch:
    patch.setattr(PreemptionGuard, "should_stop", lambda self, step: step == 3)
    stopped = train_and_evaluate(config, str(tmp_path / "split"))
    assert stopped["interrupted"] and stopped["step"] == 3, stopped
  ahead = []  # per call of a step: did it run an executable compiled ahead (not jit)?
  call = training.MeshFunction.__call__

  def recording_call(f, *a):
    jitted, through_jit = f._jitted, []
    f._jitted = lambda *x: through_jit.append(1) or jitted(*x)
    try:
      return call(f, *a)
    finally:
      f._jitted = jitted
      ahead.append(not through_jit)

  monkeypatch.setattr(training.MeshFunction, "__call__", recording_call)
  resumed = train_and_evaluate(config, str(tmp_path / "split"))
  assert len(ahead) >= 3 + 2 and all(ahead), ahead  # 3 steps, 2 evaluations of the dev set
  assert resumed == whole
  losses = {
    name: [(r["step"], r["loss"]) for r in _records(tmp_path / name) if "split" not in r]
    for name in ("whole", "split")
  }
  assert len(losses["whole"]) == 6 and losses["split"] == losses["whole"]
  final = [r for r in _records(tmp_path / "whole") if r.get("split") == "final"][-1]
  # every padded length compiled once: the step saw 16 and 32 wide batches
  assert final["compiles/train_step"] == 2 and final["compiles/predict"] >= 1


def test_small_model_defaults():
  config = glue.get_config()
  config.update(dict(init_from="unused", task="rte"))
  small = resolve_config(config, hidden_size=32)
  # 1e-4: 1e-3 wrecks a small pretrained model on real text (benchmarks/RESULTS.md).
  assert (small.learning_rate, small.max_seq_length) == (1e-4, 128)
  assert small.train_steps == 800 and "small-model" in small.hyperparameter_defaults
  assert small.log_every_steps == 40  # 20 loss lines per run by default
  base = resolve_config(config, hidden_size=768)
  assert (base.learning_rate, base.max_seq_length) == (3e-5, 512)
  assert base.hyperparameter_defaults == "published per-task"
  config.learning_rate = 5e-4  # given on the command line: kept
  assert resolve_config(config, hidden_size=32).learning_rate == 5e-4


def test_seeds_summary():
  runs = {3: {"dev/accuracy": 0.5, "best_step": 2.0}, 4: {"dev/accuracy": 0.75}, 5: {}}
  with pytest.raises(KeyError, match=r"seeds \[5\]"):
    seeds.summarize(runs, "dev/accuracy")
  runs[5] = {"dev/accuracy": 0.75}
  summary = seeds.summarize(runs, "dev/accuracy")
  assert summary["best_seed"] == 4  # the first of the best
  assert summary["metrics"]["dev/accuracy"] == pytest.approx(
    {"mean": 2 / 3, "std": np.std([0.5, 0.75, 0.75]), "best": 0.75}
  )
  assert seeds.seed_list((3,), first=10) == [10, 11, 12]
  assert seeds.seed_list((7, 1)) == [7, 1]
  with pytest.raises(ValueError, match="repeats"):
    seeds.seed_list((1, 1))


def test_several_seeds_in_one_process_keep_the_best(checkpoint, tmp_path, monkeypatch):
  """A separable task learned only partly in 30 steps: the runs differ, the best is kept."""
  from albert_flax.train import training

  built = []
  original = training.make_train_step
  monkeypatch.setattr(
    training, "make_train_step", lambda *a, **k: built.append(1) or original(*a, **k)
  )
  data = td.write_sentiment(str(tmp_path / "SST-2"), n_train=64, n_dev=32)
  workdir = tmp_path / "work"
  config = _config(glue, checkpoint, data, task="sst2", train_steps=30, eval_every_steps=15)
  config.update(
    dict(learning_rate=2e-3, max_seq_length=16, length_buckets=(8,), log_every_steps=15)
  )
  config.seeds = (3,)
  config.seed = 10
  best = train_and_evaluate(config, str(workdir))
  assert len(built) == 1  # one step for the three runs: compiled once per padded length
  with open(workdir / "seeds_summary.json") as f:
    summary = json.load(f)
  assert summary["seeds"] == [10, 11, 12]
  accuracies = {int(s): r["dev/accuracy"] for s, r in summary["runs"].items()}
  assert len(set(accuracies.values())) > 1, accuracies  # the seeds really differ
  assert summary["best_seed"] == max(accuracies, key=accuracies.get)
  assert best["dev/accuracy"] == max(accuracies.values())
  for seed in (10, 11, 12):
    with open(workdir / f"seed_{seed}" / "eval_results.json") as f:
      assert json.load(f)["dev/accuracy"] == accuracies[seed]
  _, kept = af.from_pretrained(str(workdir / "model"), af.AlbertForSequenceClassification)
  _, of_best = af.from_pretrained(
    str(workdir / f"seed_{summary['best_seed']}" / "model"), af.AlbertForSequenceClassification
  )
  jax.tree.map(np.testing.assert_array_equal, kept, of_best)
