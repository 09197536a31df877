"""SQuAD v1.1 / v2.0, RACE and CoNLL-2003 read through the real tensorflow-datasets API, offline.

`tfds.testing.mock_data`'s default random examples break every invariant these readers check
(answers not in their context, option lists not of 4, as many tags as tokens), so each test serves
a few hand-made examples instead (`as_dataset_fn`). They go through tfds' own record path: encoded
with the builder's real FeaturesDict (a field the tfds spec lacks, or a wrong type, fails there),
serialized to tf.train.Example, then parsed and decoded as a prepared dataset's records are, so
what reaches our readers has the types tfds gives on real data (nested sequences come back as
tf.RaggedTensor, as they do from disk; the random generator gives dense arrays instead).

Without the real metadata files (not shipped in the tensorflow-datasets wheel) the mock accepts any
split name, so the split names below are those of the builders' code in tensorflow-datasets 4.9
(squad: train, validation; race and conll2003: train, dev, test); `_served` fails on any other.
"""

from __future__ import annotations

import finetune_testdata as td
import numpy as np
import pytest

from albert_flax.tokenization import AlbertTokenizer
from finetune.configs import ner as ner_config
from finetune.configs import race as race_config
from finetune.configs import squad as squad_config
from finetune.data import DataError
from finetune.tasks import ner, race, squad, squad_data
from finetune.tasks.base import load_tfds, tfds_label_names

tfds = pytest.importorskip("tensorflow_datasets")
tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  return AlbertTokenizer(td.make_tokenizer(str(tmp_path_factory.mktemp("spm"))))


def _served(examples: dict[tuple[str, str], list[dict]]):
  """An `as_dataset_fn` serving `examples[(name, split)]` (name "squad/v1.1", "conll2003") through
  tfds' serialize -> parse -> decode path; also returns the list of (name, split) requested."""
  requested = []

  def as_dataset(builder, split, decoders=None, read_config=None, shuffle_files=False, **_):
    config = builder.builder_config
    # "conll2003" loads its only (default) config, also named conll2003
    names = [builder.name] + ([f"{builder.name}/{config.name}"] if config is not None else [])
    key = next(
      ((n, str(split)) for n in names if (n, str(split)) in examples), (names[-1], str(split))
    )
    requested.append(key)
    if key not in examples:  # a split the real dataset does not have (see the module docstring)
      raise ValueError(f"unexpected tfds split {key}; served: {sorted(examples)}")
    features = builder.info.features
    records = [features.serialize_example(e) for e in examples[key]]
    return tf.data.Dataset.from_tensor_slices(tf.constant(records, tf.string)).map(
      lambda record: features.deserialize_example(record, decoders=decoders)
    )

  return as_dataset, requested


def _config(module, **fields):
  from finetune.train import resolve_config

  config = module.get_config()
  # data_dir "" selects tfds; tfds_download False as a run on prepared data would (the mock makes
  # download_and_prepare a no-op either way).
  config.update(dict(init_from="unused", data_dir="", tfds_download=False, **fields))
  return resolve_config(config)


# --------------------------------------------------------------------- SQuAD

# Non-ASCII text before the answers: tfds stores answer_start in characters, and the reader
# slices the decoded str, so a byte offset anywhere on the way would misplace these.
_CTX_A = "Ünïcödé café opened in 1,000 BC near the river. Later the river moved north."
_CTX_B = "The big river went north to Paris and London, then the river went south."


def _answers(*pairs):
  return {"text": [t for t, _ in pairs], "answer_start": [s for _, s in pairs]}


def _squad_v1(qid, question, context, *pairs):
  return {
    "id": qid,
    "title": "T",
    "context": context,
    "question": question,
    "answers": _answers(*pairs),
  }


def _squad_v2(qid, question, context, answers, impossible, plausible=()):
  return {
    **_squad_v1(qid, question, context, *answers),
    "is_impossible": impossible,
    "plausible_answers": _answers(*plausible),
  }


def _check_squad_examples(examples, rows):
  """The invariants squad_from_tfds guarantees, whatever the rows."""
  assert [e.qid for e in examples] == [r["id"] for r in rows]
  for e, r in zip(examples, rows):
    assert isinstance(e, squad_data.SquadExample)
    assert (e.question, e.context) == (r["question"], r["context"])
    assert all(isinstance(x, str) for x in (e.qid, e.question, e.context))
    assert e.is_impossible == bool(r.get("is_impossible", False))
    assert (e.answers == []) == e.is_impossible
    for text, start in e.answers:
      assert isinstance(text, str) and type(start) is int
      assert e.context[start : start + len(text)] == text


def _check_squad_train_positions(tok, examples, task):
  """Single-window examples: an answerable one's (start, end) tokens cover exactly its first
  answer's characters; a v2.0 impossible one points at [CLS] (0)."""
  c = task.config
  features = squad_data.squad_features(
    examples, tok, c.max_seq_length, c.doc_stride, c.max_query_length, training=True
  )
  assert features["example_index"].tolist() == list(range(len(examples)))  # one window each
  for f, e in enumerate(examples):
    s, t = int(features["start_positions"][f]), int(features["end_positions"][f])
    if e.is_impossible:
      assert s == t == 0
      continue
    text, start = e.answers[0]
    assert 0 < s <= t
    spans = features["char_spans"][f]
    assert spans[s][0] <= start < spans[s][1]
    assert spans[t][0] < start + len(text) <= spans[t][1]


def _read_squad(tok, version, train, dev, final):
  """SquadTask over tfds `squad/<version>` serving `train` and `dev` (as validation): the
  (split requests, train examples, train features, the one eval set)."""
  name = f"squad/v{version}"
  as_dataset, requested = _served({(name, "train"): train, (name, "validation"): dev})
  task = squad.SquadTask(
    _config(squad_config, version=version, max_seq_length=128, max_query_length=16), tok
  )
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    train_examples = task._examples("train")
    train_features = task.train_features()
    (dev_set,) = task.eval_sets(final=final)
  assert sorted(set(requested)) == [(name, "train"), (name, "validation")]
  return task, train_examples, train_features, dev_set


def test_squad_v11_from_tfds(tok):
  answer = _CTX_A.index("1,000 BC")
  second_river = _CTX_A.rindex("the river")
  train = [
    _squad_v1("q1", "When did the café open?", _CTX_A, ("1,000 BC", answer)),
    # answer_start 2 characters off (a few real SQuAD answers are): the reader moves it to the
    # nearest occurrence of the text, here the second "the river", not the first.
    _squad_v1("q2", "What moved north?", _CTX_A, ("the river", second_river + 2)),
  ]
  dev = [
    _squad_v1(
      "d1",
      "Where did the river go first?",
      _CTX_B,
      ("north", 19),
      ("north to Paris", 19),
      ("north", 19),
    )
  ]
  task, train_examples, train_features, dev_set = _read_squad(tok, "1.1", train, dev, final=True)
  _check_squad_examples(train_examples, train)
  assert train_examples[0].answers == [("1,000 BC", answer)]
  assert train_examples[1].answers == [("the river", second_river)]
  _check_squad_examples(dev_set.meta, dev)
  # every reference answer kept, in order (dev scoring takes the max over them)
  assert dev_set.meta[0].answers == [("north", 19), ("north to Paris", 19), ("north", 19)]
  assert train_features["start_positions"].shape == (2,)
  assert (train_features["start_positions"] > 0).all()
  assert dev_set.name == "dev" and dev_set.labeled
  assert dev_set.features["input_ids"].shape == (1, 128)
  _check_squad_train_positions(tok, train_examples, task)


def test_squad_v20_from_tfds_impossible(tok):
  train = [
    _squad_v2("a1", "Where did the river go first?", _CTX_B, [("north", 19)], False),
    # is_impossible: no answers; plausible_answers are ignored (this one's start is wrong on
    # purpose, which the reader must not check).
    _squad_v2("n1", "Where did the lake go?", _CTX_B, [], True, [("south", 3)]),
  ]
  dev = [
    _squad_v2("n2", "Who went east?", _CTX_A, [], True),
    _squad_v2(
      "a2", "When did the café open?", _CTX_A, [("1,000 BC", _CTX_A.index("1,000 BC"))] * 2, False
    ),
  ]
  task, train_examples, train_features, dev_set = _read_squad(tok, "2.0", train, dev, final=False)
  _check_squad_examples(train_examples, train)
  _check_squad_examples(dev_set.meta, dev)
  assert [e.is_impossible for e in train_examples] == [False, True]
  assert [e.is_impossible for e in dev_set.meta] == [True, False]
  assert train_features["start_positions"][1] == train_features["end_positions"][1] == 0
  assert train_features["start_positions"][0] > 0
  _check_squad_train_positions(tok, train_examples, task)


# --------------------------------------------------------------------- RACE


def _race(example_id, article, questions):
  """questions: (question, [4 options], answer letter) triples."""
  return {
    "article": article,
    "example_id": example_id,
    "questions": [q for q, _, _ in questions],
    "options": [list(o) for _, o, _ in questions],
    "answers": [a for _, _, a in questions],
  }


_RACE = {
  "middle": _race(
    "middle1.txt",
    "Tom has a red bike. He rides it to school.",
    [
      ("Tom rides his bike to _ .", ["school", "the park", "work", "the shop"], "A"),
      ("What colour is the bike?", ["Blue", "Green", "Black", "Red"], "D"),
    ],
  ),
  "high": _race(
    "high7.txt",
    "Zoë's café, opened in 1990, sells naïve art.",
    [("When did the café open?", ["1980", "1985", "1990", "2000"], "C")],
  ),
}


def test_race_from_tfds(tok):
  served = {
    (f"race/{level}", split): [_RACE[level]]
    for level in race.LEVELS
    for split in ("train", "dev", "test")
  }
  as_dataset, requested = _served(served)
  task = race.RaceTask(_config(race_config, max_seq_length=48, max_qa_length=16), tok)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    questions = task._questions("train")
    features = task.train_features()
    sets = task.eval_sets(final=True)
  assert set(requested) == set(served)
  # levels in config order (middle, high); one RaceQuestion per question of each article
  assert [(q.level, q.example_id, q.number) for q in questions] == [
    ("middle", "middle1.txt", 0),
    ("middle", "middle1.txt", 1),
    ("high", "high7.txt", 0),
  ]
  raw = [(_RACE[q.level], q.number) for q in questions]
  for q, (article, n) in zip(questions, raw):
    assert q.article == article["article"] and q.question == article["questions"][n]
    assert len(q.options) == race.NUM_CHOICES and all(isinstance(o, str) for o in q.options)
    assert q.options == article["options"][n]
    assert 0 <= q.label < race.NUM_CHOICES and race.LETTERS[q.label] == article["answers"][n]
  assert features["input_ids"].shape == (3, race.NUM_CHOICES, 48)
  assert features["labels"].tolist() == [0, 3, 2]
  assert [s.name for s in sets] == ["dev", "test"] and all(s.labeled for s in sets)
  assert all(s.features["labels"].tolist() == [0, 3, 2] for s in sets)


# --------------------------------------------------------------------- CoNLL-2003


def _conll(tokens, ner_tags):
  # pos / chunks are not read by our reader but are part of the tfds spec; any valid names do.
  return {
    "tokens": tokens,
    "pos": ["NNP"] * len(tokens),
    "chunks": ["B-NP"] * len(tokens),
    "ner": ner_tags,
  }


_CONLL = [
  _conll(
    "EU rejects German call to boycott British lamb .".split(),
    ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"],
  ),
  # IOB1 (the original CoNLL-2003 files): I- opens an entity, B- only splits two adjacent
  # ones; the reader rewrites it as IOB2.
  _conll(
    ["Peter", "Blackburn", "in", "New", "York", "Boston"],
    ["I-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC"],
  ),
]
_CONLL_IOB2 = [_CONLL[0]["ner"], ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-LOC"]]


def test_conll2003_from_tfds(tok):
  served = {("conll2003", split): _CONLL for split in ("train", "dev", "test")}
  as_dataset, requested = _served(served)
  task = ner.NerTask(_config(ner_config, max_seq_length=64), tok)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    names = tfds_label_names("conll2003", "ner", task.config)
    sentences = task._sentences("train")
    features = task.train_features()
    sets = task.eval_sets(final=True)
  assert set(requested) == set(served)
  # the tfds ClassLabel's names, in our label order (the reader maps ids through these names)
  assert names == list(task.labels)
  assert [s.words for s in sentences] == [r["tokens"] for r in _CONLL]
  for s in sentences:
    assert len(s.tags) == len(s.words) and set(s.tags) <= set(task.labels)
  assert [s.tags for s in sentences] == _CONLL_IOB2
  # one window per sentence here; its first pieces carry the tags, in word order
  labels = features["labels"]
  assert [[task.labels[x] for x in row[row >= 0]] for row in labels] == _CONLL_IOB2
  assert [s.name for s in sets] == ["dev", "test"]
  assert all([x.tags for x in s.meta] == _CONLL_IOB2 for s in sets)


# --------------------------------------------------------------------- bad rows


@pytest.mark.parametrize(
  "name, split, row, message",
  [
    (
      "squad/v1.1",
      "train",
      _squad_v1("q9", "Q?", "abc", ("xyz", 0)),
      r"squad/v1\.1\[train\].*answer 'xyz' .* not in its context",
    ),
    (
      "race/high",
      "dev",
      _race("h.txt", "A.", [("Q?", ["a", "b", "c", "d"], "E")]),
      r"race/high\[dev\].*answer 'E' is not one of",
    ),
    (
      "race/high",
      "dev",
      _race("h.txt", "A.", [("Q?", ["a", "b", "c"], "A")]),
      r"race/high\[dev\].*3 options, expected 4",
    ),
    (
      "conll2003",
      "train",
      {**_conll(["EU", "rejects"], ["B-ORG", "O"]), "ner": ["B-ORG"]},
      r"conll2003\[train\].*sentence 0 has 2 tokens but 1 tags",
    ),
  ],
)
def test_bad_tfds_rows_name_the_split(tok, name, split, row, message):
  """Rows the tfds spec accepts but our readers cannot use raise DataError naming dataset and
  split (not a TypeError deep inside feature building)."""
  as_dataset, _ = _served({(name, split): [row]})
  with tfds.testing.mock_data(as_dataset_fn=as_dataset), pytest.raises(DataError, match=message):
    if name.startswith("squad"):
      rows = load_tfds(name, split, _config(squad_config))
      squad_data.squad_from_tfds(rows, f"{name}[{split}]")
    elif name.startswith("race"):
      race.RaceTask(_config(race_config, levels="high"), tok)._questions(split)
    else:
      ner.NerTask(_config(ner_config), tok)._sentences(split)


def test_load_tfds_gives_python_values():
  """load_tfds turns every tfds value into plain python: str (not bytes), lists of str (not object
  arrays or tf.RaggedTensor), python scalars; int sequences stay numpy arrays."""
  as_dataset, _ = _served(
    {
      ("race/middle", "train"): [_RACE["middle"]],
      ("squad/v2.0", "train"): [_squad_v2("a", "Q?", _CTX_B, [("north", 19)], False)],
    }
  )
  config = _config(squad_config)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    (r,) = load_tfds("race/middle", "train", config)
    (s,) = load_tfds("squad/v2.0", "train", config)
  assert r == _RACE["middle"]  # options: a ragged [questions, options] tensor in tfds
  assert type(s["is_impossible"]) is bool and s["is_impossible"] is False
  assert s["answers"]["text"] == ["north"]
  assert isinstance(s["answers"]["answer_start"], np.ndarray)
  assert s["answers"]["answer_start"].tolist() == [19]
  assert s["plausible_answers"]["text"] == [] and len(s["plausible_answers"]["answer_start"]) == 0
