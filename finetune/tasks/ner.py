"""Named-entity recognition on CoNLL-2003-style column files: AlbertForTokenClassification.

Data: column files in config.data_dir (`train.txt`, `valid.txt`, `test.txt` by default; the
original eng.train / eng.testa / eng.testb are found too): one token per line with its columns
("EU NNP B-NP B-ORG"; the tag is the last column), blank lines between sentences, "-DOCSTART-"
lines between documents. Tags in IOB1 or IOB2 are rewritten as IOB2 (the same entities). Or
tensorflow-datasets `conll2003`.

Each word's first piece carries its tag, the other pieces label -100 (ignored by the loss, as in
transformers); a sentence longer than the window is cut into several windows of whole words, so
every word gets a prediction. Scores are entity-level precision / recall / F1 (`metrics.py`).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from etils import epath

import albert_flax as af
from albert_flax.train import losses
from albert_flax.train.batch_spec import LENGTH, ROWS, BatchField
from finetune import metrics as metrics_lib
from finetune.data import DataError, atomic_open, pad_sequences, read_text, text_lines
from finetune.tasks.base import EvalSet, Task, load_tfds, tfds_label_names, use_tfds

IGNORE = losses.IGNORE_INDEX


@dataclasses.dataclass
class Sentence:
  words: list[str]
  tags: list[str]  # IOB2


def label_names(entity_types) -> tuple[str, ...]:
  """ "O" then B-/I- of each type: CoNLL-2003's order (tfds conll2003 uses the same)."""
  return ("O",) + tuple(f"{p}-{t}" for t in entity_types for p in "BI")


def _check_tag(tag: str, types: set[str], path: str, line: int | None) -> None:
  if tag == "O":
    return
  if len(tag) < 3 or tag[1] != "-" or tag[0] not in "BI" or tag[2:] not in types:
    raise DataError(path, line, f"tag {tag!r} is not O or B-/I- of one of {sorted(types)}")


def read_conll(path: str, entity_types) -> list[Sentence]:
  """Sentences of a CoNLL column file; errors name the file and line."""
  lines = text_lines(read_text(path, "CoNLL"))
  types = set(entity_types)
  sentences, words, tags, columns = [], [], [], None

  def flush():
    nonlocal words, tags
    if words:
      sentences.append(Sentence(words, metrics_lib.iob1_to_iob2(tags)))
    words, tags = [], []

  with lines as f:
    for number, line in enumerate(f, start=1):
      fields = line.split()
      if not fields or fields[0] == "-DOCSTART-":
        flush()
        continue
      if len(fields) < 2:
        raise DataError(path, number, f"expected a token and its tag, got {line.strip()!r}")
      if columns is None:
        columns = len(fields)
      elif len(fields) != columns:
        raise DataError(path, number, f"{len(fields)} columns where earlier lines have {columns}")
      _check_tag(fields[-1], types, path, number)
      words.append(fields[0])
      tags.append(fields[-1])
  flush()
  return sentences


def ner_features(
  sentences: list[Sentence], tokenizer, max_seq_length: int, labels: tuple[str, ...]
) -> dict[str, np.ndarray]:
  """Windows of whole words, `[CLS] pieces [SEP]`.

  Returns input_ids, token_type_ids, attention_mask, labels (-100 except on first pieces):
  int32 [F, S]; sentence_index, first_word: int32 [F] (the sentence and its first word in the
  window); word_starts: int32 [F, S] (word number within the sentence at first pieces, else -1).
  """
  words = [w for s in sentences for w in s.words]
  pieces = tokenizer.encode_as_ids(words) if words else []
  room = max_seq_length - 2
  rows, label_rows, starts_rows, owners, firsts = [], [], [], [], []
  k = 0
  for index, sentence in enumerate(sentences):
    word_pieces = []
    for _ in sentence.words:
      # a word whose text normalizes to nothing still needs a position for its tag
      word_pieces.append(pieces[k][:room] or [tokenizer.unk_token_id])
      k += 1
    w = 0
    while w < len(sentence.words):
      ids, tags, starts, first = [], [], [], w
      while w < len(sentence.words) and len(ids) + len(word_pieces[w]) <= room:
        n = len(word_pieces[w])
        ids += word_pieces[w]
        tags += [labels.index(sentence.tags[w])] + [IGNORE] * (n - 1)
        starts += [w] + [-1] * (n - 1)
        w += 1
      rows.append([tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id])
      label_rows.append([IGNORE] + tags + [IGNORE])
      starts_rows.append([-1] + starts + [-1])
      owners.append(index)
      firsts.append(first)
  lengths = np.array([len(r) for r in rows], np.int64)
  return {
    "input_ids": pad_sequences(rows, max_seq_length),
    "token_type_ids": np.zeros((len(rows), max_seq_length), np.int32),
    "attention_mask": (np.arange(max_seq_length)[None, :] < lengths[:, None]).astype(np.int32),
    "labels": pad_sequences(label_rows, max_seq_length, IGNORE),
    "sentence_index": np.asarray(owners, np.int32),
    "first_word": np.asarray(firsts, np.int32),
    "word_starts": pad_sequences(starts_rows, max_seq_length, -1),
  }


class NerTask(Task):
  """CoNLL-2003 NER (or any CoNLL-format tagging with config.entity_types)."""

  model_class = af.AlbertForTokenClassification
  sequence_outputs = ("logits",)

  def __init__(self, config, tokenizer):
    super().__init__(config, tokenizer)
    types = config.entity_types
    self.entity_types = tuple(types.split(",")) if isinstance(types, str) else tuple(types)
    self.labels = label_names(self.entity_types)

  def model_overrides(self):
    return {"num_labels": len(self.labels), "label_names": self.labels}

  def target_spec(self, batch_size, seq_len):
    return {"labels": BatchField((batch_size, seq_len), np.int32, (ROWS, LENGTH))}  # per token

  def stats(self, outputs, batch):
    return {
      "loss": losses.token_classification_loss(outputs.logits, batch["labels"], batch["weights"])
    }

  def loss_weights(self, batch):
    counted = (batch["labels"] != IGNORE) * batch["weights"][:, None]
    return {"loss": jnp.sum(counted.astype(jnp.float32))}

  def head_outputs(self, outputs):
    return {"logits": outputs.logits}

  @property
  def best_metric(self) -> str:
    return "dev/f1"

  def _file(self, split: str) -> str | None:
    candidates = {
      "train": ("train.txt", "eng.train"),
      "dev": ("valid.txt", "dev.txt", "eng.testa"),
      "test": ("test.txt", "eng.testb"),
    }[split]
    configured = self.config.get(f"{split}_file")
    for name in (configured,) if configured else candidates:
      if self.is_data_file(name):
        return self.data_path(name)
    if split == "test":
      return None
    raise FileNotFoundError(
      f"no CoNLL {split} file in {self.config.data_dir} (looked for "
      f"{list((configured,) if configured else candidates)})"
    )

  def _sentences(self, split: str) -> list[Sentence] | None:
    if use_tfds(self.config):
      names = tfds_label_names("conll2003", "ner", self.config)
      out = []
      for i, row in enumerate(load_tfds("conll2003", split, self.config)):
        tags = [names[int(t)] for t in row["ner"]]
        if len(tags) != len(row["tokens"]):
          raise DataError(
            f"conll2003[{split}]",
            None,
            f"sentence {i} has {len(row['tokens'])} tokens but {len(tags)} tags",
          )
        for t in tags:
          _check_tag(t, set(self.entity_types), f"conll2003[{split}]", None)
        out.append(Sentence(list(row["tokens"]), metrics_lib.iob1_to_iob2(tags)))
      return out
    path = self._file(split)
    return None if path is None else read_conll(path, self.entity_types)

  def _features(self, sentences):
    return ner_features(sentences, self.tokenizer, self.config.max_seq_length, self.labels)

  def train_features(self):
    features = self._features(self._limit(self._sentences("train"), "train"))
    return {k: features[k] for k in ("input_ids", "token_type_ids", "attention_mask", "labels")}

  def eval_sets(self, final: bool) -> list[EvalSet]:
    sets = []
    for split in ("dev", "test") if final else ("dev",):
      sentences = self._sentences(split)
      if sentences is None:
        continue
      sentences = self._limit(sentences, "eval")
      sets.append(EvalSet(split, self._features(sentences), True, sentences))
    return sets

  def predicted_tags(self, eval_set: EvalSet, logits: np.ndarray) -> list[list[str]]:
    """Per sentence, the tag predicted at each word's first piece."""
    sentences = eval_set.meta
    features = eval_set.features
    tags = [["O"] * len(s.words) for s in sentences]
    best = np.asarray(logits).argmax(-1)
    for f in range(len(best)):
      sentence = int(features["sentence_index"][f])
      for position in np.nonzero(features["word_starts"][f] >= 0)[0]:
        tags[sentence][int(features["word_starts"][f][position])] = self.labels[best[f, position]]
    return tags

  def score(self, eval_set, outputs):
    predictions = self.predicted_tags(eval_set, outputs["logits"])
    return metrics_lib.entity_f1(predictions, [s.tags for s in eval_set.meta]), predictions

  def write_predictions(self, eval_set, predictions, directory: str):
    path = str(epath.Path(directory) / f"{eval_set.name}_predictions.txt")
    with atomic_open(path) as f:  # CoNLL: token gold predicted, a blank line between sentences
      for sentence, tags in zip(eval_set.meta, predictions):
        for word, gold, predicted in zip(sentence.words, sentence.tags, tags):
          f.write(f"{word} {gold} {predicted}\n")
        f.write("\n")
    return [path]
