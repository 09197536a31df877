"""RACE reading comprehension (multiple choice, 4 options): AlbertForMultipleChoice.

Data: the RACE folders `{train,dev,test}/{high,middle}/*.txt` in config.data_dir, each file one
JSON object {"article", "questions", "options", "answers", "id"}; or tensorflow-datasets
`race/high` and `race/middle`. `config.levels` picks the levels ("middle", "high" or both).

Each option becomes `[CLS] article [SEP] qa [SEP]` as in the original run_race: qa is the
question with its blank "_" filled by the option, or the question followed by the option; qa
keeps its last `max_qa_length` tokens and the article is cut to fit. Accuracy is reported for
each level and over all questions.
"""

from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
from etils import epath

import albert_flax as af
from albert_flax.train import losses
from finetune import metrics as metrics_lib
from finetune.data import DataError, pad_sequences, read_text, write_json
from finetune.tasks.base import EvalSet, Task, load_tfds, use_tfds

LETTERS = "ABCD"
NUM_CHOICES = 4
LEVELS = ("middle", "high")


@dataclasses.dataclass
class RaceQuestion:
  example_id: str  # the article file's id, e.g. "high1234.txt"
  number: int  # index of the question in its article
  level: str
  article: str
  question: str
  options: list[str]
  label: int  # index of the right option, -1 unknown


def parse_article(raw: dict, level: str, where: str) -> list[RaceQuestion]:
  """Questions of one RACE article; errors name `where` (file or tfds split)."""
  for key in ("article", "questions", "options", "answers"):
    if key not in raw:
      raise DataError(where, 1, f"no {key!r} field")
  questions, options, answers = raw["questions"], raw["options"], raw["answers"]
  if not (len(questions) == len(options) == len(answers)):
    raise DataError(
      where,
      1,
      f"{len(questions)} questions, {len(options)} option lists and "
      f"{len(answers)} answers: they must match",
    )
  out = []
  for i, (question, choices, answer) in enumerate(zip(questions, options, answers)):
    if len(choices) != NUM_CHOICES:
      raise DataError(where, 1, f"question {i} has {len(choices)} options, expected {NUM_CHOICES}")
    if answer not in LETTERS:
      raise DataError(where, 1, f"question {i}: answer {answer!r} is not one of {list(LETTERS)}")
    out.append(
      RaceQuestion(
        str(raw.get("id", raw.get("example_id", where))),
        i,
        level,
        raw["article"],
        question,
        list(choices),
        LETTERS.index(answer),
      )
    )
  return out


def read_race_dir(directory: str, level: str) -> list[RaceQuestion]:
  paths = sorted(str(p) for p in epath.Path(directory).glob("*.txt"))
  if not paths:
    raise FileNotFoundError(f"no RACE article files (*.txt) in {directory}")
  questions = []
  for path in paths:
    text = read_text(path, "RACE")
    try:
      raw = json.loads(text)
    except json.JSONDecodeError as e:
      raise DataError(path, e.lineno, f"not valid JSON: {e.msg}") from None
    if not isinstance(raw, dict):
      raise DataError(path, 1, "expected a JSON object")
    raw.setdefault("id", epath.Path(path).name)
    questions += parse_article(raw, level, path)
  return questions


def race_features(
  questions: list[RaceQuestion], tokenizer, max_seq_length: int, max_qa_length: int
) -> dict[str, np.ndarray]:
  """input_ids, token_type_ids, attention_mask int32 [N, 4, S]; labels int32 [N]."""
  articles = sorted({q.article for q in questions})
  article_ids = dict(zip(articles, tokenizer.encode_as_ids(articles) if articles else []))
  qas = [
    q.question.replace("_", option) if "_" in q.question else f"{q.question} {option}"
    for q in questions
    for option in q.options
  ]
  qa_ids = tokenizer.encode_as_ids(qas) if qas else []
  rows, types = [], []
  for n, q in enumerate(questions):
    for c in range(NUM_CHOICES):
      qa = qa_ids[n * NUM_CHOICES + c][-max_qa_length:]
      context = article_ids[q.article][: max(0, max_seq_length - 3 - len(qa))]
      rows.append(
        [tokenizer.cls_token_id]
        + context
        + [tokenizer.sep_token_id]
        + qa
        + [tokenizer.sep_token_id]
      )
      types.append([0] * (len(context) + 2) + [1] * (len(qa) + 1))
  shape = (len(questions), NUM_CHOICES, max_seq_length)
  lengths = np.array([len(r) for r in rows], np.int64)
  mask = (np.arange(max_seq_length)[None, :] < lengths[:, None]).astype(np.int32)
  return {
    "input_ids": pad_sequences(rows, max_seq_length).reshape(shape),
    "token_type_ids": pad_sequences(types, max_seq_length).reshape(shape),
    "attention_mask": mask.reshape(shape),
    "labels": np.asarray([q.label for q in questions], np.int32),
  }


class RaceTask(Task):
  """RACE middle / high; AlbertForMultipleChoice."""

  model_class = af.AlbertForMultipleChoice
  input_dims = (NUM_CHOICES,)

  def __init__(self, config, tokenizer):
    super().__init__(config, tokenizer)
    levels = (
      tuple(config.levels.split(",")) if isinstance(config.levels, str) else tuple(config.levels)
    )
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
      raise ValueError(f"config.levels must name some of {LEVELS}, got {config.levels!r}")
    if config.max_qa_length > config.max_seq_length - 3:
      raise ValueError(
        f"max_qa_length {config.max_qa_length} leaves no room for the article "
        f"in max_seq_length {config.max_seq_length}"
      )
    self.levels = levels

  def model_overrides(self):
    return {}

  def stats(self, outputs, batch):
    return {"loss": losses.multiple_choice_loss(outputs.logits, batch["labels"], batch["weights"])}

  def loss_weights(self, batch):
    return {"loss": jnp.sum(batch["weights"])}

  def head_outputs(self, outputs):
    return {"logits": outputs.logits}

  @property
  def best_metric(self) -> str:
    return "dev/accuracy"

  def _questions(self, split: str) -> list[RaceQuestion]:
    out = []
    for level in self.levels:
      if use_tfds(self.config):
        name = f"race/{level}"
        for row in load_tfds(name, split, self.config):
          out += parse_article(row, level, f"{name}[{split}]")
      else:
        out += read_race_dir(self.data_path(split, level), level)
    return out

  def _features(self, questions):
    return race_features(
      questions, self.tokenizer, self.config.max_seq_length, self.config.max_qa_length
    )

  def train_features(self):
    return self._features(self._limit(self._questions("train"), "train"))

  def eval_sets(self, final: bool) -> list[EvalSet]:
    splits = ("dev", "test") if final else ("dev",)
    sets = []
    for split in splits:
      if (
        split == "test"
        and not use_tfds(self.config)
        and not epath.Path(self.data_path("test")).is_dir()
      ):
        continue
      questions = self._limit(self._questions(split), "eval")
      sets.append(EvalSet(split, self._features(questions), True, questions))
    return sets

  def score(self, eval_set, outputs):
    predictions = np.asarray(outputs["logits"]).argmax(-1)
    questions = eval_set.meta
    labels = eval_set.features["labels"]
    out = {"accuracy": metrics_lib.accuracy(predictions, labels)}
    for level in self.levels:
      keep = np.array([q.level == level for q in questions])
      if keep.any():
        out[f"accuracy_{level}"] = metrics_lib.accuracy(predictions[keep], labels[keep])
    return out, predictions

  def write_predictions(self, eval_set, predictions, directory: str):
    path = str(epath.Path(directory) / f"{eval_set.name}_predictions.json")
    write_json(
      path,
      [
        {
          "id": q.example_id,
          "question": q.number,
          "level": q.level,
          "prediction": LETTERS[int(p)],
          "answer": LETTERS[q.label],
        }
        for q, p in zip(eval_set.meta, predictions)
      ],
    )
    return [path]
