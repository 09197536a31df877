"""Readers and feature builders of the fine-tuning tasks, on files in their real formats, and the
errors bad data raises (naming file and line)."""

import json
import os
import random

import finetune_testdata as td
import ml_collections
import numpy as np
import pytest

from albert_flax.tokenization import AlbertTokenizer
from finetune.data import DataError, encode_pairs, eval_batches, train_batches, write_json
from finetune.tasks import glue, glue_data, ner, race, squad, squad_data


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  return AlbertTokenizer(td.make_tokenizer(str(tmp_path_factory.mktemp("spm"))))


# --------------------------------------------------------------------- batching


def test_pair_truncation_and_batches():
  f = encode_pairs([[5, 6, 7, 8, 9]], [[10, 11]], 8, 2, 3)
  # 5 + 2 > 8 - 3: the longer side loses its last tokens
  assert f["input_ids"].tolist() == [[2, 5, 6, 7, 3, 10, 11, 3]]
  assert f["token_type_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
  features = {"x": np.arange(10)}
  first = [b["x"].tolist() for b, _ in zip(train_batches(features, 4, seed=1), range(5))]
  resumed = [
    b["x"].tolist() for b, _ in zip(train_batches(features, 4, seed=1, start_step=3), range(2))
  ]
  assert resumed == first[3:5]
  assert sorted(sum(first[:2], []) + first[2][:2]) == list(range(10))  # an epoch, then carried
  batches = list(eval_batches(features, 4))
  assert [b["weights"].tolist() for b in batches][-1] == [1, 1, 0, 0]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
  path = tmp_path / "out.json"
  with pytest.raises(TypeError):
    write_json(path, {"a": object()})
  assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------- GLUE


def _spec(name):
  return glue_data.TASKS[name]


def test_glue_mnli_formats(tmp_path):
  d = td.write_mnli(str(tmp_path / "MNLI"))
  train = glue_data.read_glue_file(_spec("mnli"), os.path.join(d, "train.tsv"), labeled=True)
  assert len(train.ids) == 24 and train.labels.dtype == np.int32
  labels = [glue_data._NLI3[i] for i in train.labels[:3]]
  assert labels == ["entailment", "contradiction", "neutral"]
  dev = glue_data.read_glue_file(_spec("mnli"), os.path.join(d, "dev_matched.tsv"), labeled=True)
  assert len(dev.texts[0]) == 9
  test = glue_data.read_glue_file(
    _spec("mnli"), os.path.join(d, "test_matched.tsv"), labeled=False, index_column="index"
  )
  assert test.labels is None and test.ids == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize(
  "task, header, row, expected",
  [
    ("sst2", ["sentence", "label"], ["a good film", "1"], (("a good film",), 1)),
    (
      "mrpc",
      ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
      ["1", "702876", "702977", "He went .", "He left ."],
      (("He went .", "He left ."), 1),
    ),
    (
      "qqp",
      ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
      ["7", "15", "16", "How?", "Why?", "0"],
      (("How?", "Why?"), 0),
    ),
    (
      "stsb",
      [
        "index",
        "genre",
        "filename",
        "year",
        "old_index",
        "source1",
        "source2",
        "sentence1",
        "sentence2",
        "score",
      ],
      [
        "0",
        "main-captions",
        "MSRvid",
        "2012test",
        "0001",
        "none",
        "none",
        "A man.",
        "A dog.",
        "3.800",
      ],
      (("A man.", "A dog."), 3.8),
    ),
    (
      "qnli",
      ["index", "question", "sentence", "label"],
      ["0", "What?", "This.", "not_entailment"],
      (("What?", "This."), 1),
    ),
    (
      "rte",
      ["index", "sentence1", "sentence2", "label"],
      ["0", "x y", "y", "entailment"],
      (("x y", "y"), 0),
    ),
    ("wnli", ["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "1"], (("a", "b"), 1)),
  ],
)
def test_glue_headers_as_distributed(tmp_path, task, header, row, expected):
  path = td.write(str(tmp_path / "train.tsv"), "\ufeff" * (task == "mrpc") + td.tsv(header, row))
  examples = glue_data.read_glue_file(_spec(task), path, labeled=True)
  assert tuple(t[0] for t in examples.texts) == expected[0]
  assert examples.labels[0] == pytest.approx(expected[1])


def test_glue_cola_headerless(tmp_path):
  d = td.write_cola(str(tmp_path / "CoLA"))
  train = glue_data.read_glue_file(_spec("cola"), os.path.join(d, "train.tsv"), labeled=True)
  assert train.labels.tolist() == [0, 1] * 6
  test = glue_data.read_glue_file(
    _spec("cola"), os.path.join(d, "test.tsv"), labeled=False, index_column="index"
  )
  assert len(test.ids) == 3 and test.labels is None


def test_glue_bad_data_names_file_and_line(tmp_path):
  path = td.write(
    str(tmp_path / "dev.tsv"),
    td.tsv(
      ["index", "sentence1", "sentence2", "label"],
      ["0", "a", "b", "entailment"],
      ["1", "a", "b", "maybe"],
    ),
  )
  with pytest.raises(DataError, match=r"dev\.tsv:3: label 'maybe' is not one of"):
    glue_data.read_glue_file(_spec("rte"), path, labeled=True)
  path = td.write(
    str(tmp_path / "train.tsv"),
    td.tsv(["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "entailment"], ["1", "a"]),
  )
  with pytest.raises(DataError, match=r"train\.tsv:3: 2 columns"):
    glue_data.read_glue_file(_spec("rte"), path, labeled=True)
  kept = glue_data.read_glue_file(_spec("rte"), path, labeled=True, skip_malformed=True)
  assert kept.ids == ["0"] and kept.labels.tolist() == [0]
  path = td.write(str(tmp_path / "x.tsv"), td.tsv(["index", "sentence"], ["0", "a"]))
  with pytest.raises(DataError, match=r"x\.tsv:1: no column \['sentence1', 'sentence2'"):
    glue_data.read_glue_file(_spec("rte"), path, labeled=False)
  path = td.write(
    str(tmp_path / "s.tsv"), td.tsv(["sentence1", "sentence2", "score"], ["a", "b", "7.5"])
  )
  with pytest.raises(DataError, match=r"s\.tsv:2: score 7\.5 is outside"):
    glue_data.read_glue_file(_spec("stsb"), path, labeled=True)


# --------------------------------------------------------------------- SQuAD


def test_squad_reader_and_features_map_answers(tmp_path, tok):
  d = td.write_squad(str(tmp_path), "2.0")
  examples = squad_data.read_squad_json(os.path.join(d, "train-v2.0.json"), "2.0")
  assert len(examples) == 8 and sum(e.is_impossible for e in examples) == 4
  f = squad_data.squad_features(examples, tok, 48, doc_stride=16, max_query_length=8, training=True)
  owners = f["example_index"]
  assert len(owners) > len(examples)  # long contexts were split into windows
  for i, example in enumerate(examples):
    windows = np.nonzero(owners == i)[0]
    hits = [w for w in windows if f["start_positions"][w] > 0]
    if example.is_impossible:
      assert not hits
      continue
    assert hits, "some window holds the answer"
    for w in hits:
      s, e = f["start_positions"][w], f["end_positions"][w]
      a, b = f["char_spans"][w, s, 0], f["char_spans"][w, e, 1]
      assert example.context[a:b] == example.answers[0][0]
  # every context token has its most-context window exactly once
  for i in range(len(examples)):
    rows = np.nonzero(owners == i)[0]
    n_tokens = len(squad_data.context_tokens(tok, examples[i].context)[0])
    assert f["max_context"][rows].sum() == n_tokens


def test_squad_answer_offsets_repaired_or_rejected(tmp_path):
  data = td.squad_json("1.1", n_paragraphs=1)
  qa = data["data"][0]["paragraphs"][0]["qas"][0]
  context = data["data"][0]["paragraphs"][0]["context"]
  right = qa["answers"][0]["answer_start"]
  qa["answers"] = [{"text": qa["answers"][0]["text"], "answer_start": right + 2}]
  path = td.write(str(tmp_path / "dev-v1.1.json"), json.dumps(data, indent=1))
  example = squad_data.read_squad_json(path, "1.1")[0]
  assert example.answers[0][1] == right  # a slightly-off start is moved onto the text
  qa["answers"] = [{"text": "Zanzibar", "answer_start": 3}]
  assert "Zanzibar" not in context
  path = td.write(str(tmp_path / "bad.json"), json.dumps(data, indent=1))
  line = [
    i for i, text in enumerate(json.dumps(data, indent=1).split("\n"), 1) if '"p0q0"' in text
  ][0]
  with pytest.raises(DataError, match=rf"bad\.json:{line}: question 'p0q0': answer 'Zanzibar'"):
    squad_data.read_squad_json(path, "1.1")


def test_squad_nbest_on_chosen_logits(tok):
  context = "The big river went north to Paris and London."
  example = squad_data.SquadExample("q", "Where?", context, [("Paris", context.index("Paris"))])
  f = squad_data.squad_features([example], tok, 64, 128, 16, training=False)
  spans = f["char_spans"][0]
  at = context.index("Paris")
  inside = [
    t
    for t in range(64)
    if spans[t, 0] >= at and 0 < spans[t, 1] <= at + 5 and spans[t, 1] > spans[t, 0]
  ]
  paris, last = inside[0], inside[-1]
  start = np.full((1, 64), -5.0)
  end = np.full((1, 64), -5.0)
  start[0, paris], end[0, last] = 4.0, 4.0
  start[0, 0], end[0, 0] = 1.0, 1.0  # null score 2
  answers, diffs, nbest = squad.nbest_answers(
    [example], f, start, end, n_best_size=5, max_answer_length=10
  )
  assert answers["q"] == "Paris"
  assert diffs["q"] == pytest.approx(2.0 - 8.0)
  assert nbest["q"][0]["probability"] > 0.5
  # an end before the start, or a span longer than max_answer_length, is never chosen
  end[0, last] = -5.0
  end[0, paris - 1] = 9.0
  answers, _, _ = squad.nbest_answers([example], f, start, end, 5, max_answer_length=1)
  assert answers["q"] != context[spans[paris - 1, 0] : spans[paris, 1]]


# --------------------------------------------------------------------- RACE


def test_race_reader_features_and_errors(tmp_path, tok):
  d = td.write_race(str(tmp_path))
  questions = race.read_race_dir(os.path.join(d, "train", "high"), "high")
  assert len(questions) == 4 and questions[0].example_id == "1.txt"
  f = race.race_features(questions, tok, 40, max_qa_length=10)
  assert f["input_ids"].shape == (4, 4, 40) and f["labels"].tolist() == [q.label for q in questions]
  # [CLS] article [SEP] qa [SEP]: qa capped at its last 10 tokens, the article cut to fit
  row = f["input_ids"][0, 0]
  assert row[0] == tok.cls_token_id and (row == tok.sep_token_id).sum() == 2
  assert f["attention_mask"][0, 0].sum() == 40
  # the blank of "Which one is _ ?" is filled with the option
  filled = race.race_features([questions[1]], tok, 400, 400)
  option = tok.encode_as_ids(questions[1].question.replace("_", questions[1].options[2]))
  ids = filled["input_ids"][0, 2]
  sep = np.nonzero(ids == tok.sep_token_id)[0]
  assert ids[sep[0] + 1 : sep[1]].tolist() == option
  bad = td.race_article(random.Random(0), "9.txt")
  bad["answers"][1] = "E"
  path = td.write(str(tmp_path / "bad" / "9.txt"), json.dumps(bad))
  with pytest.raises(DataError, match=r"9\.txt:1: question 1: answer 'E'"):
    race.read_race_dir(os.path.dirname(path), "high")


# --------------------------------------------------------------------- CoNLL


def test_conll_reader_iob1_and_features(tmp_path, tok):
  rng = random.Random(3)
  sentences = td.conll_sentences(rng, 6)
  path2 = td.write(str(tmp_path / "iob2.txt"), td.conll_text(sentences))
  path1 = td.write(str(tmp_path / "iob1.txt"), td.conll_text(sentences, iob1=True))
  read2 = ner.read_conll(path2, ("PER", "ORG", "LOC", "MISC"))
  read1 = ner.read_conll(path1, ("PER", "ORG", "LOC", "MISC"))
  assert (
    [s.tags for s in read1] == [s.tags for s in read2] == [[t for _, t in s] for s in sentences]
  )
  labels = ner.label_names(("PER", "ORG", "LOC", "MISC"))
  f = ner.ner_features(read2, tok, 12, labels)
  # long sentences become several windows of whole words; every word has exactly one label
  for i, s in enumerate(read2):
    rows = np.nonzero(f["sentence_index"] == i)[0]
    counted = f["labels"][rows] != -100
    assert counted.sum() == len(s.words)
    got = [labels[x] for x in f["labels"][rows][counted]]
    assert got == s.tags


def test_conll_bad_tag_names_file_and_line(tmp_path):
  path = td.write(
    str(tmp_path / "train.txt"),
    "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-FOO\n",
  )
  with pytest.raises(DataError, match=r"train\.txt:5: tag 'B-FOO'"):
    ner.read_conll(path, ("PER", "ORG", "LOC", "MISC"))
  path = td.write(str(tmp_path / "short.txt"), "EU NNP B-NP B-ORG\nrejects\n")
  with pytest.raises(DataError, match=r"short\.txt:2: expected a token and its tag"):
    ner.read_conll(path, ("ORG",))


def test_task_configs_resolve():
  from finetune.configs import glue as glue_config

  config = glue_config.get_config()
  assert config.per_task["rte"].train_steps == 800
  assert config.learning_rate is None  # filled from per_task at start-up
  assert isinstance(config, ml_collections.ConfigDict)


def test_glue_from_tensorflow_datasets(tok):
  """No data_dir: glue/mnli and glue/ax through the real tfds API (tfds' mock data, no
  download); tfds label ids are mapped to our label names by name."""
  tfds = pytest.importorskip("tensorflow_datasets")
  from finetune.train import resolve_config

  config = glue_config_for_tfds()
  task = glue.GlueTask(resolve_config(config), tok)
  with tfds.testing.mock_data(num_examples=6):
    train = task.train_features()
    rows = glue_data.load_tfds("glue/mnli", "train", task.config)
    sets = task.eval_sets(final=True)
  tfds_names = ("entailment", "neutral", "contradiction")  # tfds' ClassLabel order
  expected = [glue_data._NLI3.index(tfds_names[r["label"]]) for r in rows]
  assert train["labels"].tolist() == expected
  assert [s.name for s in sets] == [
    "dev_matched",
    "dev_mismatched",
    "test_matched",
    "test_mismatched",
    "ax",
  ]
  assert all(s.features["input_ids"].shape == (6, 32) for s in sets)
  assert [s.labeled for s in sets] == [True, True, False, False, False]


def glue_config_for_tfds():
  from finetune.configs import glue as glue_config

  config = glue_config.get_config()
  config.update(
    dict(task="mnli", init_from="unused", data_dir="", max_seq_length=32, tfds_download=False)
  )
  return config


# --------------------------------------------------------------------- scoring of tasks


def _resolved(module, **fields):
  from finetune.train import resolve_config

  config = module.get_config()
  config.update(dict(init_from="unused", **fields))
  return resolve_config(config)


def test_glue_scores_and_submission_files(tmp_path):
  from finetune.configs import glue as glue_config
  from finetune.tasks.base import EvalSet

  stsb = glue.GlueTask(_resolved(glue_config, task="stsb"), None)
  labels = np.array([0.0, 1.0, 2.5, 5.0], np.float32)
  dev = EvalSet(
    "dev",
    {"labels": labels},
    True,
    (glue_data.TASKS["stsb"].dev[0], glue_data.GlueExamples((), labels, list("abcd"), "x")),
  )
  scores, predictions = stsb.score(dev, {"logits": np.array([[0.1], [0.9], [3.0], [4.0]])})
  assert scores["spearman"] == pytest.approx(1.0) and 0.9 < scores["pearson"] < 1.0
  split = glue_data.TASKS["stsb"].test[0]
  test = EvalSet("test", {}, False, (split, glue_data.GlueExamples((), None, ["7", "8"], "x")))
  _, predictions = stsb.score(test, {"logits": np.array([[1.23456], [4.0]])})
  (path,) = stsb.write_predictions(test, predictions, str(tmp_path))
  assert os.path.basename(path) == "STS-B.tsv"
  assert open(path).read() == "index\tprediction\n7\t1.235\n8\t4.000\n"
  cola = glue.GlueTask(_resolved(glue_config, task="cola"), None)
  gold = np.array([1, 1, 0, 0, 1])
  dev = EvalSet("dev", {"labels": gold}, True, None)
  logits = np.array([[0, 1], [0, 1], [1, 0], [0, 1], [1, 0]], np.float32)  # tp 2 tn 1 fp 1 fn 1
  scores, _ = cola.score(dev, {"logits": logits})
  assert scores == {"mcc": pytest.approx((2 * 1 - 1 * 1) / np.sqrt(3 * 3 * 2 * 2))}
  # a labeled set's file: prediction, gold label, then each label's probability
  dev = EvalSet(
    "dev",
    {"labels": gold[:3]},
    True,
    (glue_data.TASKS["cola"].dev[0], glue_data.GlueExamples((), gold[:3], ["4", "5", "6"], "x")),
  )
  _, predictions = cola.score(dev, {"logits": np.array([[0.0, 2.0], [1.0, 1.0], [3.0, -1.0]])})
  (path,) = cola.write_predictions(dev, predictions, str(tmp_path))
  p = 1 / (1 + np.exp(-2.0))  # softmax of (0, 2) at label 1
  q = 1 / (1 + np.exp(-4.0))
  assert open(path).read() == (
    "index\tprediction\tlabel\tp(0)\tp(1)\n"
    f"4\t1\t1\t{1 - p:.6f}\t{p:.6f}\n"
    "5\t0\t1\t0.500000\t0.500000\n"
    f"6\t0\t0\t{q:.6f}\t{1 - q:.6f}\n"
  )


def test_race_scores_per_level():
  from finetune.configs import race as race_config
  from finetune.tasks.base import EvalSet

  task = race.RaceTask(_resolved(race_config), None)
  levels = ["middle", "middle", "high", "high", "high"]
  questions = [race.RaceQuestion("x", i, lv, "", "", ["a"] * 4, 0) for i, lv in enumerate(levels)]
  labels = np.array([0, 1, 2, 3, 0])
  logits = np.eye(4)[[0, 1, 2, 0, 1]]  # right: 0, 1, 2; wrong: 3, 4
  scores, _ = task.score(EvalSet("dev", {"labels": labels}, True, questions), {"logits": logits})
  assert scores == {
    "accuracy": pytest.approx(3 / 5),
    "accuracy_middle": pytest.approx(1.0),
    "accuracy_high": pytest.approx(1 / 3),
  }


def test_ner_predictions_use_first_pieces(tok):
  from finetune.configs import ner as ner_config
  from finetune.tasks.base import EvalSet

  task = ner.NerTask(_resolved(ner_config, max_seq_length=6), tok)
  sentences = [
    ner.Sentence(
      ["John", "went", "to", "Paris", "and", "London"], ["B-PER", "O", "O", "B-LOC", "O", "B-LOC"]
    )
  ]
  features = ner.ner_features(sentences, tok, 6, task.labels)
  assert len(features["input_ids"]) >= 2  # cut into windows of whole words
  # logits that put each gold tag on the first piece and "B-MISC" everywhere else
  logits = np.zeros(features["labels"].shape + (len(task.labels),), np.float32)
  logits[..., task.labels.index("B-MISC")] = 1.0
  rows, cols = np.nonzero(features["labels"] >= 0)
  logits[rows, cols, features["labels"][rows, cols]] = 5.0
  scores, predictions = task.score(EvalSet("dev", features, True, sentences), {"logits": logits})
  assert predictions == [sentences[0].tags] and scores["f1"] == pytest.approx(1.0)


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_squad_task_scores_and_no_answer_threshold(tok, version, tmp_path):
  from finetune.configs import squad as squad_config
  from finetune.tasks.base import EvalSet

  task = squad.SquadTask(_resolved(squad_config, version=version, max_seq_length=64), tok)
  context = "The big river went north to Paris and London."
  at = context.index("Paris")
  examples = [
    squad_data.SquadExample("a", "Where?", context, [("Paris", at)]),
    squad_data.SquadExample("b", "Who?", context, [("London", context.index("London"))]),
  ]
  if version == "2.0":
    examples.append(squad_data.SquadExample("c", "What?", context, [], is_impossible=True))
  features = squad_data.squad_features(examples, tok, 64, 128, 16, training=False)
  start = np.full(features["input_ids"].shape, -5.0)
  end = np.full(features["input_ids"].shape, -5.0)
  for f, example in enumerate(examples):
    spans = features["char_spans"][f]
    inside = [
      t
      for t in range(64)
      if spans[t, 0] >= at and 0 < spans[t, 1] <= at + 5 and spans[t, 1] > spans[t, 0]
    ]
    start[f, inside[0]], end[f, inside[-1]] = 3.0, 3.0  # every question answers "Paris"
    start[f, 0] = end[f, 0] = {"a": 0.0, "b": 1.0, "c": 2.5}[example.qid]  # null score 2x this
  scores, predictions = task.score(
    EvalSet("dev", features, True, examples), {"start_logits": start, "end_logits": end}
  )
  if version == "1.1":
    assert predictions.final == {"a": "Paris", "b": "Paris"}
    assert scores == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(50.0)}
  else:
    # null - best: a -6, b -4, c -1; answering a only (threshold -6) scores a and c right
    assert scores["best_f1"] == pytest.approx(100 * 2 / 3)
    assert scores["best_f1_thresh"] == pytest.approx(-6.0)
    assert predictions.final == {"a": "Paris", "b": "", "c": ""}
    assert scores["f1"] == pytest.approx(scores["best_f1"])
    assert scores["NoAns_f1"] == pytest.approx(100.0) and scores["HasAns_f1"] == pytest.approx(50)
  paths = task.write_predictions(
    EvalSet("dev", features, True, examples), predictions, str(tmp_path)
  )
  with open(paths[0]) as f:
    assert json.load(f) == predictions.final
