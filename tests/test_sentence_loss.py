"""The inter-sentence loss setting (`config.sentence_loss` = sop | nsp | none): BERT's
next-sentence pairs (pure function, pipeline, resume, static shards), the cross-evaluation of the
sentence head on both kinds of held-back pairs, and "none" leaving the head untrained."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_pretrain_data import _batches, _cat, _locate, _unmasked, setup  # noqa: F401
from test_pretrain_train import _small_config, _write_corpus

import albert_flax as af
from albert_flax import sharding
from albert_flax.train import training
from pretrain import create_data, data, nsp, sop
from pretrain import train as pretrain_train
from pretrain.sentence_loss import is_head_path
from pretrain.steps import build_steps

S, P = 64, 10


def _documents(rng, num_docs=40):
  """Random sentence lengths of `num_docs` documents (0..12 sentences each)."""
  doc_num = rng.integers(0, 13, num_docs)
  return rng.integers(1, 20, int(doc_num.sum())), doc_num


def _doc_of_token(sentence_lengths, doc_num):
  """token offset -> document index, for the flat token array of the documents."""
  doc_tokens = np.add.reduceat(sentence_lengths, np.r_[0, np.cumsum(doc_num)[:-1]])
  doc_tokens = np.where(doc_num > 0, doc_tokens, 0)
  ends = np.cumsum(doc_tokens)
  return lambda offset: int(np.searchsorted(ends, offset, side="right"))


def test_nsp_pairs_take_negatives_from_another_document():
  rng = np.random.default_rng(0)
  lengths, doc_num = _documents(rng, 400)
  pairs = nsp.create_pairs(lengths, doc_num, 48, 0.1, np.random.default_rng(1))
  doc_of = _doc_of_token(lengths, doc_num)
  first_doc = np.array([doc_of(s) for s in pairs.first_start])
  second_doc = np.array([doc_of(s) for s in pairs.second_start])
  last_doc = np.array([doc_of(s + n - 1) for s, n in zip(pairs.second_start, pairs.second_len)])
  n, negatives = len(pairs), pairs.label == 1
  # Half of the pairs are negatives: binomial(n, 1/2) within 4 standard deviations.
  assert n > 500 and abs(negatives.sum() - n / 2) < 4 * np.sqrt(n / 4), (negatives.sum(), n)
  assert np.all(first_doc[negatives] != second_doc[negatives])  # B from another document
  assert np.all(first_doc[~negatives] == second_doc[~negatives])
  assert np.all(second_doc == last_doc)  # B lies within one document
  # Positives: B follows A in its document (truncation only trims their outer ends).
  assert np.all(
    pairs.first_start[~negatives] + pairs.first_len[~negatives] <= pairs.second_start[~negatives]
  )
  assert np.all(pairs.first_len >= 1) & np.all(pairs.second_len >= 1)
  assert np.all(pairs.first_len + pairs.second_len <= 48 - 3)
  # A pure function of its inputs and the random stream; another stream, other pairs.
  again = nsp.create_pairs(lengths, doc_num, 48, 0.1, np.random.default_rng(1))
  other = nsp.create_pairs(lengths, doc_num, 48, 0.1, np.random.default_rng(2))
  for field in ("first_start", "first_len", "second_start", "second_len", "label"):
    np.testing.assert_array_equal(getattr(pairs, field), getattr(again, field))
  assert not np.array_equal(pairs.label, other.label[: len(pairs)])
  # One non-empty document: no other document to draw from, no pairs.
  assert len(nsp.create_pairs(lengths[:12], np.array([12, 0]), 48, 0.1, rng)) == 0


def test_sop_pairs_unchanged_by_the_refactoring():
  """The SOP maker draws from its stream in the same order as before NSP existed: a window's
  pairs, fixed here by a digest of today's output, stay the ones earlier runs trained on."""
  lengths, doc_num = _documents(np.random.default_rng(3), 60)
  pairs = sop.create_pairs(lengths, doc_num, 48, 0.1, np.random.default_rng(4))
  flat = np.stack([pairs.first_start, pairs.first_len, pairs.second_start, pairs.second_len])
  assert np.all(pairs.label[pairs.first_start > pairs.second_start] == 1)
  assert np.all(pairs.label[pairs.first_start < pairs.second_start] == 0)
  # Computed with the sentence-order maker before next-sentence pairs were added.
  weighted = int((flat * np.arange(1, len(pairs) + 1)).sum())
  assert (len(pairs), int(flat.sum()), int(pairs.label.sum()), weighted) == (
    84,
    298188,
    32,
    16792232,
  )


def test_nsp_pipeline_pairs_and_resume(setup):  # noqa: F811
  b = _cat(_batches(setup, 60, batch_size=32, sentence_pairs="nsp", num_epochs=1))
  labels = b["sentence_order_label"]
  assert abs(labels.mean() - 0.5) < 0.06, labels.mean()
  ids, sep, find = _unmasked(b), setup["tok"].sep_token_id, _locate(setup)
  checked = {0: 0, 1: 0}
  for row, label in zip(ids[:900], labels[:900]):
    s1, s2 = np.nonzero(row == sep)[0]
    first, second = row[1:s1], row[s1 + 1 : s2]
    if min(len(first), len(second)) < 8:
      continue  # short segments may occur twice in the corpus
    a, c = find(first), find(second)
    assert a is not None and c is not None, "a segment is not a contiguous run of its document"
    if label == 1:
      assert a[0] != c[0], "a random next segment from the same document"
    else:
      assert a[0] == c[0] and a[1] + len(first) <= c[1]
    checked[int(label)] += 1
  assert min(checked.values()) > 150, checked

  # Deterministic under the seed, and across a resume.
  kw = dict(process_index=0, process_count=1, shuffle_buffer=16, sentence_pairs="nsp")
  full = _batches(setup, 14, batch_size=24, **kw)
  with data.make_pretraining_batches(setup["glob"], setup["tok"], 24, S, P, 0, **kw) as it:
    for _ in range(6):
      next(it)
    state = json.loads(json.dumps(it.get_state()))
  with data.make_pretraining_batches(
    setup["glob"], setup["tok"], 24, S, P, 0, state=state, **kw
  ) as resumed:
    for x in full[6:]:
      y = next(resumed)
      for k in x:
        np.testing.assert_array_equal(x[k], y[k])
  other_seed = _batches(setup, 2, batch_size=24, seed=1, **kw)
  assert not np.array_equal(other_seed[0]["input_ids"], full[0]["input_ids"])
  # A sentence-order stream does not resume from a next-sentence one's state.
  with pytest.raises(ValueError, match="other data settings"):
    data.make_pretraining_batches(
      setup["glob"], setup["tok"], 24, S, P, 0, state=state, process_index=0, process_count=1,
      shuffle_buffer=16,
    )  # fmt: skip


def test_static_nsp_shards(setup, tmp_path):  # noqa: F811
  out = str(tmp_path / "nsp")
  info = create_data.create_data(
    setup["glob"], setup["model"], out, max_seq_length=S, max_predictions_per_seq=P,
    dupe_factor=1, num_shards=1, shuffle_buffer=64, sentence_pairs="nsp",
  )  # fmt: skip
  assert info["sentence_pairs"] == "nsp"
  shards_glob = f"{out}/*.array_record"
  kw = dict(process_index=0, process_count=1, num_epochs=1, static_shards=shards_glob)
  with data.make_pretraining_batches(None, None, 64, S, P, sentence_pairs="nsp", **kw) as it:
    labels = np.concatenate([b["sentence_order_label"] for b in it])
  assert len(labels) > 500 and abs(labels.mean() - 0.5) < 0.07
  with pytest.raises(ValueError, match="hold 'nsp' sentence pairs"):
    data.make_pretraining_batches(None, None, 64, S, P, **kw)


# ------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Four-step runs of a small model for each sentence loss, evaluated at steps 2 and 4."""
  d = tmp_path_factory.mktemp("sentence_loss")
  corpus = _write_corpus(d / "corpus.txt")
  out = {}
  for loss in ("sop", "nsp", "none"):
    config = _small_config(
      corpus, 4, eval_steps=1, eval_every_steps=2, sentence_loss=loss, checkpoint_every_steps=4
    )
    config.progress_bar = False
    workdir = d / loss
    pretrain_train.train_and_evaluate(config, str(workdir))
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    out[loss] = (config, workdir, rows)
  return out


@pytest.mark.parametrize("loss", ["sop", "nsp", "none"])
def test_cross_evaluation_metrics_for_each_sentence_loss(runs, loss):
  config, _, rows = runs[loss]
  evals = [r for r in rows if r.get("split") == "eval"]
  assert [r["step"] for r in evals] == [2, 4]
  for r in evals:  # MLM, SOP and NSP accuracy whatever was trained
    for key in ("masked_lm_accuracy", "sentence_order_accuracy", "next_sentence_accuracy"):
      assert 0.0 <= r[key] <= 1.0, (key, r)
    trained = {"sop": ["sentence_order_loss"], "nsp": ["next_sentence_loss"], "none": []}[loss]
    assert r["loss"] == pytest.approx(r["masked_lm_loss"] + sum(r[k] for k in trained))
  train = [r for r in rows if "split" not in r][-1]
  assert ("sentence_order_loss" in train) == (loss == "sop"), train
  assert ("next_sentence_loss" in train) == (loss == "nsp"), train
  assert train["loss"] == pytest.approx(
    train["masked_lm_loss"] + sum(train.get(k, 0.0) for k in trained)
  )


def _initial_params(config, workdir):
  model = af.AlbertForPreTraining(af.AlbertConfig.from_json_file(str(workdir / "config.json")))
  mesh = sharding.make_mesh(1, 1, 1, jax.devices()[:1])
  steps = build_steps(config, model, mesh)
  # As the run initializes (one jitted init: eager init differs in the last bits).
  state, _ = training.init_train_state(
    steps.init_params_fn, steps.optimizer, mesh, jax.random.key(config.seed)
  )
  return jax.device_get(state.params)


@pytest.mark.parametrize("loss", ["none", "sop"])
def test_none_trains_no_sentence_head(runs, loss):
  config, workdir, _ = runs[loss]
  _, final = af.from_pretrained(str(workdir))
  initial = _initial_params(config, workdir)
  changed = jax.tree_util.tree_map_with_path(
    lambda path, a, b: (is_head_path(path), not np.array_equal(np.asarray(a), np.asarray(b))),
    initial,
    final,
  )
  flags = jax.tree.leaves(changed, is_leaf=lambda x: isinstance(x, tuple))
  head = [c for is_head, c in flags if is_head]
  body = [c for is_head, c in flags if not is_head]
  assert len(head) == 4 and any(body)  # pooler and classifier kernels and biases
  if loss == "none":
    assert not any(head), "the sentence head changed without a sentence loss"
  else:
    assert all(head)


def test_sentence_loss_config_errors():
  config = _small_config("builtin", 4, sentence_loss="mlm")
  with pytest.raises(ValueError, match="sentence_loss must be one of"):
    pretrain_train.validate_config(config)


def test_none_has_no_head_gradient():
  """With "none" the objective does not reach the sentence head: its gradient is exactly 0."""
  from albert_flax.train import losses

  model = af.AlbertForPreTraining(
    af.AlbertConfig.preset("tiny", num_hidden_layers=1, vocab_size=100, hidden_size=32)
  )
  ids = jnp.arange(2 * 16, dtype=jnp.int32).reshape(2, 16) % 50 + 5
  params = model.init(jax.random.key(0), ids)["params"]
  batch = {
    "input_ids": ids,
    "attention_mask": jnp.ones_like(ids),
    "token_type_ids": jnp.zeros_like(ids),
    "masked_lm_positions": jnp.array([[1, 2], [3, 4]], jnp.int32),
    "masked_lm_ids": jnp.array([[7, 8], [9, 10]], jnp.int32),
    "masked_lm_weights": jnp.ones((2, 2), jnp.float32),
    "sentence_order_label": jnp.array([0, 1], jnp.int32),
  }
  for loss, head_grad_zero in (("none", True), ("nsp", False)):
    stats_fn = losses.pretraining_stats_fn(model, loss)
    totals = losses.pretraining_loss_weights_fn(loss)(batch)

    def objective(p, stats_fn=stats_fn, totals=totals):
      stats = stats_fn(p, batch, jax.random.key(0), False)
      return sum(stats[k][0] / totals[k] for k in totals)

    grads = jax.jit(jax.grad(objective))(sharding.unbox(params))
    head = jax.tree_util.tree_map_with_path(
      lambda path, g: float(jnp.abs(g).max()) if is_head_path(path) else None, grads
    )
    values = [v for v in jax.tree.leaves(head) if v is not None]
    assert len(values) == 4
    assert (max(values) == 0.0) == head_grad_zero, (loss, values)


# ------------------------------------------------------------------------------ the ablations

_ABLATION_CONFIG = """
from pretrain.configs import tiny


def get_config():
  c = tiny.get_config()
  c.tokenizer.vocab_size = 120
  c.model_overrides.hidden_size = 32
  c.model_overrides.num_attention_heads = 2
  c.model_overrides.intermediate_size = 64
  c.data.eval_fraction = 0.2
  c.eval_steps = 1
  return c
"""


def _tiny_tasks(directory, rows=16):
  """Stand-ins for the two built-in tasks' folders (their GLUE layouts, a few made-up rows):
  writing the real ones takes longer than this whole test may."""
  words = "the value of a list returns when this module is called with one argument".split()
  rng = np.random.default_rng(0)
  sentence = lambda: " ".join(rng.choice(words, 6))  # noqa: E731
  for name, header, row in (
    ("docstring_kind", "sentence\tlabel", lambda i: f"{sentence()}\t{i % 2}"),
    (
      "next_sentence",
      "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
      lambda i: f"{i % 2}\t{i}\t{i + rows}\t{sentence()}\t{sentence()}",
    ),
  ):
    (directory / name).mkdir(parents=True)
    for split in ("train", "dev"):
      lines = [header] + [row(i) for i in range(rows)]
      (directory / name / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def test_ablations_end_to_end(tmp_path, capsys):
  """Two variants of Table 3 (E=16, not-shared and all-shared) pretrained a few steps, evaluated
  on MLM / NSP / SOP, fine-tuned on two tiny tasks; the table, JSON and plot; a rerun skips."""
  from pretrain import ablations

  corpus = _write_corpus(tmp_path / "corpus.txt")
  config_file = tmp_path / "ablation_config.py"
  config_file.write_text(_ABLATION_CONFIG)
  workdir = tmp_path / "abl"
  _tiny_tasks(workdir / "builtin_tasks")
  argv = [
    "--table=3",
    f"--workdir={workdir}",
    f"--config={config_file}",
    f"--corpus={corpus}",
    "--embedding_sizes=16",
    "--layers=2",
    "--steps=3",
    "--batch=8",
    "--seq=32",
    "--evals=1",
    "--finetune_steps=2",
    "--finetune_batch=8",
    "--finetune_seq=32",
  ]
  assert ablations.main(argv) == 0
  results = json.loads((workdir / "ablations.json").read_text())
  assert sorted(results) == ["all-E16-sop", "none-E16-sop"]
  for r in results.values():
    assert all(0 <= r[k] <= 100 for k in ("mlm", "nsp", "sop")), r
    assert sorted(r["tasks"]) == ["docstring_kind", "next_sentence"] and r["avg"] is not None
    assert [step for step, _ in r["mlm_curve"]] == [3]
  # Not-shared holds one more layer than all-shared: its exact count from the shapes.
  layer = 4 * (32 * 32 + 32) + 2 * 32 * 64 + 64 + 32 + 4 * 32
  assert results["none-E16-sop"]["params"] - results["all-E16-sop"]["params"] == layer
  table = (workdir / "ablations.md").read_text()
  assert "| not-shared E=16 | ours |" in table and "| all-shared E=16 | ours |" in table
  # Beside each, the paper's row of the E it stands for (ALBERT's E=128): 89M and 12M.
  assert "|  | paper | 89M |" in table and "|  | paper | 12M |" in table
  assert (workdir / "mlm_accuracy.png").read_bytes()[:4] == b"\x89PNG"
  assert table in capsys.readouterr().out
  for v in results:
    assert (workdir / "variants" / v / "finetune" / "next_sentence" / "eval_results.json").exists()

  # A rerun trains nothing (each finished run is skipped) and writes the same table.
  metrics = workdir / "variants" / "all-E16-sop" / "pretrain" / "metrics.jsonl"
  before = metrics.read_text()
  assert ablations.main(argv) == 0
  assert metrics.read_text() == before
  assert (workdir / "ablations.md").read_text() == table

  # Bad input: one line, status 2.
  assert ablations.main([*argv, "--variants=all-E99-sop"]) == 2
  assert ablations.main(["--table=7", f"--workdir={workdir}"]) == 2
  err = capsys.readouterr().err
  assert "--variants ['all-E99-sop'] not in tables 3" in err and "Traceback" not in err
