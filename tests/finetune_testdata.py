"""Small data sets in the real distribution formats, a test tokenizer and a tiny checkpoint, for
the fine-tuning tests (tests/test_finetune_*.py)."""

from __future__ import annotations

import json
import os
import random

WORDS = (
  "the a river city red blue green house john mary paris london went saw "
  "film movie north south road big small one two three four five "
  "question answer what who where when is was of in to and it this that"
).split()
# Words that decide labels in the learnable sets; never used as filler.
CUES = ("yes", "no", "maybe", "great", "awful")


def sentence(rng: random.Random, n: int = 8, extra: tuple[str, ...] = ()) -> str:
  words = [rng.choice(WORDS) for _ in range(n)] + list(extra)
  rng.shuffle(words)
  return " ".join(words)


def make_tokenizer(directory: str) -> str:
  """A sentencepiece model trained on the test vocabulary; returns its path."""
  from albert_flax.tokenization import train_tokenizer

  rng = random.Random(0)
  corpus = os.path.join(directory, "corpus.txt")
  with open(corpus, "w", encoding="utf-8") as f:
    for _ in range(400):
      f.write(sentence(rng, 12, (rng.choice(CUES),)).capitalize() + ".\n")
    f.write("Ünïcödé café, 1,000 and 2,500 ﬁsh ``quoted'' text; punctuation! (yes)\n")
  return train_tokenizer(
    corpus, 120, os.path.join(directory, "spiece"), hard_vocab_limit=False, num_threads=1
  )


def write(path: str, text: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return path


def tsv(*rows) -> str:
  return "".join("\t".join(str(c) for c in row) + "\n" for row in rows)


# --------------------------------------------------------------------- GLUE

MNLI_TRAIN_HEADER = (
  "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
  "sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label"
).split()
MNLI_DEV_HEADER = (
  "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
  "sentence1_parse sentence2_parse sentence1 sentence2 label1 label2 label3 "
  "label4 label5 gold_label"
).split()
MNLI_TEST_HEADER = MNLI_TRAIN_HEADER[:10]


def _nli_pair(rng: random.Random, label: str) -> tuple[str, str]:
  # learnable: the hypothesis carries a word that tells the label
  cue = {"entailment": "yes", "contradiction": "no", "neutral": "maybe"}[label]
  return sentence(rng, 6), sentence(rng, 3, (cue, cue))


def write_mnli(directory: str, n_train: int = 24, n_dev: int = 9, seed: int = 0) -> str:
  rng = random.Random(seed)
  labels = ["entailment", "contradiction", "neutral"]

  def row(i, label, header):
    a, b = _nli_pair(rng, label)
    full = [i, 100 + i, f"{100 + i}e", "fiction", "( x )", "( y )", "(ROOT x)", "(ROOT y)", a, b]
    if header is MNLI_TRAIN_HEADER:
      return full + [label, label]
    if header is MNLI_DEV_HEADER:
      return full + [label] * 5 + [label]
    return full

  write(
    os.path.join(directory, "train.tsv"),
    tsv(MNLI_TRAIN_HEADER, *[row(i, labels[i % 3], MNLI_TRAIN_HEADER) for i in range(n_train)]),
  )
  for name in ("dev_matched", "dev_mismatched"):
    write(
      os.path.join(directory, f"{name}.tsv"),
      tsv(MNLI_DEV_HEADER, *[row(i, labels[i % 3], MNLI_DEV_HEADER) for i in range(n_dev)]),
    )
  for name in ("test_matched", "test_mismatched"):
    write(
      os.path.join(directory, f"{name}.tsv"),
      tsv(MNLI_TEST_HEADER, *[row(i, "neutral", MNLI_TEST_HEADER) for i in range(5)]),
    )
  write(
    os.path.join(directory, os.pardir, "diagnostic", "diagnostic.tsv"),
    tsv(
      ["index", "sentence1", "sentence2"],
      *[[i, sentence(rng, 5), sentence(rng, 5)] for i in range(4)],
    ),
  )
  return directory


def write_cola(directory: str, n: int = 12, seed: int = 0) -> str:
  rng = random.Random(seed)
  rows = [
    ["gj04", i % 2, "" if i % 2 else "*", sentence(rng, 5, ("yes",) if i % 2 else ("no",))]
    for i in range(n)
  ]
  write(os.path.join(directory, "train.tsv"), tsv(*rows))  # CoLA train/dev: no header
  write(os.path.join(directory, "dev.tsv"), tsv(*rows[:6]))
  write(
    os.path.join(directory, "test.tsv"),
    tsv(["index", "sentence"], *[[i, sentence(rng, 5)] for i in range(3)]),
  )
  return directory


def write_sentiment(directory: str, n_train: int, n_dev: int, seed: int = 0) -> str:
  """SST-2 format, learnable: label 1 iff the sentence holds "great" (else "awful")."""
  rng = random.Random(seed)

  def rows(n):
    out = []
    for _i in range(n):
      label = rng.randrange(2)
      cue = "great" if label else "awful"
      out.append([sentence(rng, 5, (cue, cue)), label])
    return out

  write(os.path.join(directory, "train.tsv"), tsv(["sentence", "label"], *rows(n_train)))
  write(os.path.join(directory, "dev.tsv"), tsv(["sentence", "label"], *rows(n_dev)))
  return directory


# --------------------------------------------------------------------- SQuAD


def squad_json(version: str, n_paragraphs: int = 4, seed: int = 0) -> dict:
  """Paragraphs with questions whose answer follows a cue word; v2.0 adds unanswerable ones."""
  rng = random.Random(seed)
  data = []
  for p in range(n_paragraphs):
    answer = rng.choice(["paris", "london", "john", "mary"]).capitalize()
    before = sentence(rng, 20 + 10 * p)
    context = f"{before} It was {answer} who went north. {sentence(rng, 8)}"
    start = context.index(answer)
    qas = [
      {
        "id": f"p{p}q0",
        "question": "Who went north?",
        "answers": [{"text": answer, "answer_start": start}] * 2,
      }
    ]
    if version == "2.0":
      qas[0]["is_impossible"] = False
      qas.append(
        {
          "id": f"p{p}q1",
          "question": "What is blue?",
          "answers": [],
          "plausible_answers": [{"text": answer, "answer_start": start}],
          "is_impossible": True,
        }
      )
    data.append({"title": f"t{p}", "paragraphs": [{"context": context, "qas": qas}]})
  return {"version": version, "data": data}


def write_squad(directory: str, version: str) -> str:
  for split, seed in (("train", 0), ("dev", 1)):
    write(
      os.path.join(directory, f"{split}-v{version}.json"),
      json.dumps(squad_json(version, seed=seed), indent=1),
    )
  return directory


# --------------------------------------------------------------------- RACE


def race_article(rng: random.Random, name: str, n_questions: int = 2) -> dict:
  questions, options, answers = [], [], []
  for q in range(n_questions):
    right = rng.randrange(4)
    opts = [sentence(rng, 2) for _ in range(4)]
    opts[right] = "great " + opts[right]
    questions.append("Which one is _ ?" if q % 2 else "What did the text say?")
    options.append(opts)
    answers.append("ABCD"[right])
  return {
    "answers": answers,
    "options": options,
    "questions": questions,
    "article": sentence(rng, 30),
    "id": name,
  }


def write_race(directory: str, per_level: int = 2, seed: int = 0) -> str:
  rng = random.Random(seed)
  for split in ("train", "dev", "test"):
    for level in ("middle", "high"):
      for i in range(per_level):
        name = f"{i + 1}.txt"
        write(os.path.join(directory, split, level, name), json.dumps(race_article(rng, name)))
  return directory


# --------------------------------------------------------------------- CoNLL


def conll_sentences(rng: random.Random, n: int) -> list[list[tuple[str, str]]]:
  """Learnable tags: capitalized city names are LOC, person names PER (IOB2)."""
  out = []
  for _ in range(n):
    words = []
    for _ in range(rng.randint(3, 9)):
      kind = rng.random()
      if kind < 0.2:
        words.append((rng.choice(["Paris", "London"]), "B-LOC"))
      elif kind < 0.35:
        words += [("John", "B-PER"), ("Mary", "I-PER")]
      else:
        words.append((rng.choice(["went", "saw", "the", "road", "big"]), "O"))
    out.append(words)
  return out


def conll_text(sentences, iob1: bool = False) -> str:
  lines = ["-DOCSTART- -X- -X- O", ""]
  for words in sentences:
    previous = "O"
    for word, tag in words:
      written = tag
      if iob1 and tag.startswith("B-") and previous[2:] != tag[2:]:
        written = "I-" + tag[2:]  # IOB1 keeps B- only right after an entity of the same type
      lines.append(f"{word} NNP B-NP {written}")
      previous = tag
    lines.append("")
  return "\n".join(lines) + "\n"


def write_conll(
  directory: str, n_train: int = 16, n_dev: int = 6, seed: int = 0, iob1: bool = False
) -> str:
  rng = random.Random(seed)
  write(os.path.join(directory, "train.txt"), conll_text(conll_sentences(rng, n_train), iob1))
  write(os.path.join(directory, "valid.txt"), conll_text(conll_sentences(rng, n_dev), iob1))
  write(os.path.join(directory, "test.txt"), conll_text(conll_sentences(rng, 4), iob1))
  return directory


def run_config(module, checkpoint: str, data_dir: str, **fields):
  """`module.get_config()` (a finetune/configs module) for a short test run from `checkpoint` on
  `data_dir`: batches of 8, 4 steps, logging and evaluation every 2, no progress bar or
  TensorBoard; `fields` override any of it."""
  config = module.get_config()
  config.init_from = checkpoint
  config.data_dir = data_dir
  config.update(
    dict(
      max_seq_length=64,
      batch_size=8,
      train_steps=4,
      warmup_steps=1,
      learning_rate=1e-3,
      eval_batch_size=8,
      log_every_steps=2,
      eval_every_steps=2,
      progress_bar=False,
      tensorboard=False,
    )
  )
  config.update(fields)
  return config


def tiny_checkpoint(root) -> str:
  """A tiny pretrained-model directory under `root` (a pathlib.Path): config.json, params/
  (orbax) and spiece.model, with a 1-layer, 32-wide backbone. Returns its path."""
  import jax
  import jax.numpy as jnp

  import albert_flax as af
  from albert_flax import sharding

  spm = make_tokenizer(str(root))
  config = af.AlbertConfig(
    vocab_size=af.AlbertTokenizer(spm).vocab_size,
    embedding_size=16,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
  )
  model = af.AlbertModel(config)
  params = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 8), jnp.int32))["params"]
  path = str(root / "model")
  af.save_pretrained(path, model, sharding.unbox(params), format="orbax", tokenizer=spm)
  return path
