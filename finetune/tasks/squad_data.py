"""SQuAD v1.1 / v2.0 data: the JSON reader, and examples -> windowed features.

A context longer than the window is split into overlapping windows `doc_stride` tokens apart (the
original run_squad's sliding window); each feature is `[CLS] question [SEP] window [SEP]`.
Answers are given in characters of the raw context; the tokenizer's offsets
(`return_offsets_mapping=True`) give every context token its raw character span, so a character
answer maps to tokens exactly and a predicted token span maps back to the raw text (no
whitespace-tokenization heuristics). A training answer outside a window, or a v2.0 question
without answer, points at [CLS] (position 0), as in transformers.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from finetune.data import DataError, pad_sequences, read_text


def context_tokens(tokenizer, context: str) -> tuple[list[int], np.ndarray]:
  """Ids of `context` (no special tokens) and each token's raw character span int64 [T, 2]."""
  enc = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
  return enc["input_ids"], np.asarray(enc["offset_mapping"], np.int64).reshape(-1, 2)


@dataclasses.dataclass
class SquadExample:
  qid: str
  question: str
  context: str
  answers: list[tuple[str, int]]  # (text, char start); [] for a v2.0 question without answer
  is_impossible: bool = False


def _line_of(raw: str, qid: str) -> int | None:
  """Line of a question id in the JSON text (for messages), when it can be found."""
  position = raw.find(json.dumps(qid))
  return raw.count("\n", 0, position) + 1 if position >= 0 else None


def _place_answer(context: str, text: str, start: int) -> int | None:
  """The answer's character start in `context`: `start` when the text is there, else the
  occurrence of the text nearest to `start` (a few SQuAD answers are off by some characters);
  None when the text is not in the context at all."""
  if 0 <= start and context[start : start + len(text)] == text:
    return start
  best, position = None, context.find(text)
  while position >= 0:
    if best is None or abs(position - start) < abs(best - start):
      best = position
    position = context.find(text, position + 1)
  return best


def _check_answers(examples_answers, context, qid, where) -> list[tuple[str, int]]:
  path, raw = where
  placed = []
  for answer in examples_answers:
    if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
      raise DataError(
        path, _line_of(raw, qid), f"question {qid!r}: an answer lacks 'text' or 'answer_start'"
      )
    text, start = answer["text"], answer["answer_start"]
    if (
      not isinstance(text, str)
      or not text.strip()
      or isinstance(start, bool)
      or not isinstance(start, int)
    ):
      raise DataError(
        path,
        _line_of(raw, qid),
        f"question {qid!r}: answer {answer!r} needs a "
        "non-empty 'text' and an integer 'answer_start'",
      )
    at = _place_answer(context, text, start)
    if at is None:
      raise DataError(
        path,
        _line_of(raw, qid),
        f"question {qid!r}: answer {text!r} (answer_start {start}) is not in its context",
      )
    placed.append((text, at))
  return placed


def read_squad_json(path: str, version: str) -> list[SquadExample]:
  """Examples of a SQuAD JSON file ({"data": [{"paragraphs": [{"context", "qas"}]}]})."""
  raw = read_text(path, "SQuAD")
  try:
    data = json.loads(raw)
  except json.JSONDecodeError as e:
    raise DataError(path, e.lineno, f"not valid JSON: {e.msg}") from None
  if not isinstance(data, dict) or not isinstance(data.get("data"), list):
    raise DataError(path, 1, 'expected a JSON object with a "data" list')
  examples, seen = [], set()
  for a, article in enumerate(data["data"]):
    for p, paragraph in enumerate(article.get("paragraphs", [])):
      context = paragraph.get("context")
      if not isinstance(context, str) or not isinstance(paragraph.get("qas"), list):
        raise DataError(
          path, None, f"data[{a}].paragraphs[{p}] needs a 'context' string and a 'qas' list"
        )
      for q, qa in enumerate(paragraph["qas"]):
        qid = qa.get("id")
        if not isinstance(qid, str) or not isinstance(qa.get("question"), str):
          raise DataError(
            path, None, f"data[{a}].paragraphs[{p}].qas[{q}] needs string 'id' and 'question'"
          )
        if qid in seen:
          raise DataError(path, _line_of(raw, qid), f"question id {qid!r} appears twice")
        seen.add(qid)
        impossible = bool(qa.get("is_impossible", False))
        if impossible and version != "2.0":
          raise DataError(
            path,
            _line_of(raw, qid),
            f"question {qid!r} is_impossible, which only SQuAD 2.0 has; set --config.version=2.0",
          )
        answers = (
          [] if impossible else _check_answers(qa.get("answers", []), context, qid, (path, raw))
        )
        if not impossible and not answers:
          raise DataError(
            path,
            _line_of(raw, qid),
            f"question {qid!r} has no answer and is not marked is_impossible",
          )
        examples.append(SquadExample(qid, qa["question"], context, answers, impossible))
  return examples


def squad_from_tfds(rows: list[dict], name: str) -> list[SquadExample]:
  examples = []
  for row in rows:
    answers = row["answers"]
    impossible = bool(row.get("is_impossible", False))
    pairs = (
      []
      if impossible
      else _check_answers(
        [
          {"text": t, "answer_start": int(s)}
          for t, s in zip(answers["text"], answers["answer_start"])
        ],
        row["context"],
        row["id"],
        (name, ""),
      )
    )
    examples.append(SquadExample(row["id"], row["question"], row["context"], pairs, impossible))
  return examples


# --------------------------------------------------------------------- features


def _max_context(windows: list[tuple[int, int]], w: int, position: int) -> bool:
  """Whether window `w` is the one where token `position` has the most context on both sides
  (min(left, right) + 0.01 * window length, the original's `_check_is_max_context`)."""
  best, best_score = None, None
  for i, (start, length) in enumerate(windows):
    if not start <= position < start + length:
      continue
    score = min(position - start, start + length - 1 - position) + 0.01 * length
    if best_score is None or score > best_score:
      best, best_score = i, score
  return best == w


def _windows(num_tokens: int, room: int, doc_stride: int) -> list[tuple[int, int]]:
  """(start, length) of the windows over a context of `num_tokens` tokens: `room` tokens each,
  the next starting `doc_stride` tokens on, the last reaching the context's end."""
  windows, start = [], 0
  while True:
    length = min(num_tokens - start, room)
    windows.append((start, length))
    if start + length >= num_tokens:
      return windows
    start += min(length, doc_stride)


def _answer_tokens(example: SquadExample, doc_spans: np.ndarray) -> tuple[int, int]:
  """The first and last context tokens covering the example's first answer (training)."""
  text, char_start = example.answers[0]
  char_end = char_start + len(text)
  inside = np.nonzero(
    (doc_spans[:, 1] > char_start)
    & (doc_spans[:, 0] < char_end)
    & (doc_spans[:, 1] > doc_spans[:, 0])
  )[0]
  if len(inside) == 0:
    raise ValueError(f"question {example.qid!r}: no token covers answer {text!r}")
  return int(inside[0]), int(inside[-1])


def squad_features(
  examples: list[SquadExample],
  tokenizer,
  max_seq_length: int,
  doc_stride: int,
  max_query_length: int,
  training: bool,
) -> dict[str, np.ndarray]:
  """Windowed features of SQuAD examples; the context's tokens map back to its characters
  through the tokenizer's offsets (`context_tokens`), for SentencePiece and WordPiece alike.

  Returns, with F features and S = max_seq_length:
    input_ids, token_type_ids, attention_mask: int32 [F, S];
    start_positions, end_positions: int32 [F] (training only; 0 = [CLS] = no answer here);
    example_index: int32 [F], the example each feature comes from;
    char_spans: int32 [F, S, 2], raw context characters of each token (-1 outside the context);
    max_context: bool [F, S], the window where the token has the most context.
  """
  if doc_stride < 1:
    raise ValueError(f"doc_stride must be positive, got {doc_stride}")
  questions = tokenizer.encode_as_ids([e.question for e in examples]) if examples else []
  cache: dict[str, tuple[list[int], np.ndarray]] = {}
  rows, types, starts, ends, owners, span_rows, max_rows = [], [], [], [], [], [], []
  for index, (example, q_ids) in enumerate(zip(examples, questions)):
    q_ids = q_ids[:max_query_length]
    if example.context not in cache:
      cache[example.context] = context_tokens(tokenizer, example.context)
    doc_ids, doc_spans = cache[example.context]
    room = max_seq_length - len(q_ids) - 3
    if room < 1:
      raise ValueError(
        f"max_seq_length {max_seq_length} leaves no room for the context after a "
        f"{len(q_ids)}-token question; raise it or lower max_query_length"
      )
    windows = _windows(len(doc_ids), room, doc_stride)
    answer_tokens = _answer_tokens(example, doc_spans) if training and example.answers else None
    offset = len(q_ids) + 2  # [CLS] question [SEP]
    for w, (start, length) in enumerate(windows):
      ids = (
        [tokenizer.cls_token_id]
        + q_ids
        + [tokenizer.sep_token_id]
        + doc_ids[start : start + length]
        + [tokenizer.sep_token_id]
      )
      rows.append(ids)
      types.append([0] * offset + [1] * (length + 1))
      spans = np.full((max_seq_length, 2), -1, np.int32)
      spans[offset : offset + length] = doc_spans[start : start + length]
      span_rows.append(spans)
      best = np.zeros((max_seq_length,), bool)
      for t in range(length):
        best[offset + t] = _max_context(windows, w, start + t)
      max_rows.append(best)
      owners.append(index)
      s = e = 0
      if (
        answer_tokens is not None
        and start <= answer_tokens[0]
        and answer_tokens[1] < start + length
      ):
        s, e = answer_tokens[0] - start + offset, answer_tokens[1] - start + offset
      starts.append(s)
      ends.append(e)
  input_ids = pad_sequences(rows, max_seq_length)
  features = {
    "input_ids": input_ids,
    "token_type_ids": pad_sequences(types, max_seq_length),
    "attention_mask": (
      np.arange(max_seq_length)[None, :] < np.array([len(r) for r in rows], np.int64)[:, None]
    ).astype(np.int32),
    "example_index": np.asarray(owners, np.int32),
    "char_spans": np.stack(span_rows) if span_rows else np.zeros((0, max_seq_length, 2), np.int32),
    "max_context": np.stack(max_rows) if max_rows else np.zeros((0, max_seq_length), bool),
  }
  if training:
    features["start_positions"] = np.asarray(starts, np.int32)
    features["end_positions"] = np.asarray(ends, np.int32)
  return features
