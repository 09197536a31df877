"""Pipelines on raw text: fill-mask, text classification, question answering, feature extraction.

    fill = af.pipeline("fill-mask", model="path/or/hub-id")
    fill("The capital of France is [MASK].")  # [{"score", "token", "token_str", "sequence"}, ...]
    af.pipeline("text-classification", model=path)(["great film", "awful"])  # [{"label", "score"}]
    af.pipeline("question-answering", model=path)(question="Who?", context="John went.")
    af.pipeline("feature-extraction", model=path)("some text")               # [1][seq][hidden]

Results have the shapes transformers' pipelines return. Texts are tokenized with the checkpoint's
tokenizer, truncated to `max_length`, and run `batch_size` rows at a time; every batch is padded
to `batch_size` rows and its length to the next bucket (16, 32, 64, ... up to max_length), so the
model is compiled once per bucket, not once per input length.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from albert_flax import checkpoints, heads
from albert_flax.tokenization.loading import load_tokenizer

_TASK_MODELS = {
  "fill-mask": heads.AlbertForMaskedLM,
  "text-classification": heads.AlbertForSequenceClassification,
  "question-answering": heads.AlbertForQuestionAnswering,
  "feature-extraction": heads.AlbertModel,
}


def length_buckets(max_length: int, smallest: int = 16) -> list[int]:
  """16, 32, 64, ... below max_length, then max_length: the padded lengths a pipeline uses."""
  buckets, n = [], smallest
  while n < max_length:
    buckets.append(n)
    n *= 2
  return [*buckets, max_length]


class Pipeline:
  """Tokenize, run the model in fixed-shape jitted batches, post-process (one subclass per task).

  Attributes:
    model: the linen model; params: its parameters; tokenizer: the tokenizer.
    max_length: inputs are truncated to this many tokens (special tokens included).
    batch_size: rows per model call (short batches are padded with empty rows).
    traces: how many times the model function was traced (= compiled): once per bucket length.
  """

  task: str = ""

  def __init__(
    self, model, params, tokenizer, *, batch_size: int = 8, max_length: int | None = None
  ):
    config = model.config
    self.model, self.params, self.tokenizer = model, params, tokenizer
    self.max_length = int(max_length or config.max_position_embeddings)
    if not 1 <= self.max_length <= config.max_position_embeddings:
      raise ValueError(
        f"max_length={max_length} must be in [1, {config.max_position_embeddings}] "
        "(max_position_embeddings)"
      )
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.batch_size = batch_size
    self.buckets = length_buckets(self.max_length)
    self.traces = 0

    def forward(params, ids, mask, types):
      self.traces += 1  # runs only while tracing: counts compilations
      return model.apply(
        {"params": params}, ids, attention_mask=mask, token_type_ids=types, deterministic=True
      )

    self._forward = jax.jit(forward)

  def _run(self, rows: Sequence[tuple[list[int], list[int]]]) -> list[Any]:
    """(input ids, token types) per row, each at most max_length -> the model output of each
    row, as host numpy arrays with the batch axis removed (padding kept)."""
    outputs = []
    for start in range(0, len(rows), self.batch_size):
      chunk = rows[start : start + self.batch_size]
      longest = max(len(ids) for ids, _ in chunk)
      length = next(b for b in self.buckets if b >= longest)
      ids = np.zeros((self.batch_size, length), np.int32)
      mask = np.zeros_like(ids)
      types = np.zeros_like(ids)
      for i, (row_ids, row_types) in enumerate(chunk):
        ids[i, : len(row_ids)] = row_ids
        types[i, : len(row_ids)] = row_types
        mask[i, : len(row_ids)] = 1
      out = jax.device_get(self._forward(self.params, ids, mask, types))
      outputs += [jax.tree.map(lambda x, i=i: x[i], out) for i in range(len(chunk))]
    return outputs

  def _encode(self, text: str, pair: str | None = None) -> tuple[list[int], list[int]]:
    enc = self.tokenizer(text, pair, max_length=self.max_length, truncation=True)
    return enc["input_ids"], enc["token_type_ids"]

  def __call__(self, inputs, **kwargs):
    single = isinstance(inputs, (str, Mapping))
    batch = [inputs] if single else list(inputs)
    results = self._process(batch, **kwargs)
    return results[0] if single else results

  def _process(self, batch: list, **kwargs) -> list:
    raise NotImplementedError


class FillMaskPipeline(Pipeline):
  """Top-k fillers of each [MASK]: a list of {"score", "token", "token_str", "sequence"} per
  input (a list of such lists when an input holds several masks)."""

  task = "fill-mask"

  def _process(self, batch: list[str], top_k: int = 5) -> list:
    tok = self.tokenizer
    rows = [self._encode(text) for text in batch]
    for text, (ids, _) in zip(batch, rows):
      if tok.mask_token_id not in ids:
        raise ValueError(f"no [MASK] token in {text!r} (after truncation to {self.max_length})")
    results = []
    for (ids, _), out in zip(rows, self._run(rows)):
      per_mask = []
      positions = [p for p, t in enumerate(ids) if t == tok.mask_token_id]
      for position in positions:
        probs = _softmax(out.logits[position].astype(np.float64))
        top = np.argsort(-probs, kind="stable")[:top_k]
        fills = []
        for token in top:
          filled = list(ids)
          filled[position] = int(token)
          fills.append(
            {
              "score": float(probs[token]),
              "token": int(token),
              "token_str": tok.decode([int(token)]),
              "sequence": tok.decode(filled, skip_special_tokens=True),
            }
          )
        per_mask.append(fills)
      results.append(per_mask[0] if len(per_mask) == 1 else per_mask)
    return results


class TextClassificationPipeline(Pipeline):
  """{"label", "score"} per input (top_k=None: every label, best first); label names from the
  config's id2label. Inputs: texts, or {"text", "text_pair"} dicts for pairs."""

  task = "text-classification"

  def __call__(self, inputs, top_k: int | None = 1, **kwargs):
    # As transformers: a single text gives a one-element list when top_k=1.
    out = super().__call__(inputs, top_k=top_k, **kwargs)
    return [out] if isinstance(inputs, (str, Mapping)) and top_k == 1 else out

  def _process(self, batch: list, top_k: int | None = 1) -> list:
    config = self.model.config
    names = config.label_names or tuple(f"LABEL_{i}" for i in range(config.num_labels))
    rows = []
    for item in batch:
      if isinstance(item, Mapping):
        rows.append(self._encode(item["text"], item.get("text_pair")))
      else:
        rows.append(self._encode(item))
    results = []
    for out in self._run(rows):
      logits = out.logits.astype(np.float64)
      if config.num_labels == 1 or config.resolved_problem_type == "multi_label_classification":
        scores = 1.0 / (1.0 + np.exp(-logits))
      else:
        scores = _softmax(logits)
      order = np.argsort(-scores, kind="stable")
      ranked = [{"label": names[i], "score": float(scores[i])} for i in order]
      results.append(ranked[0] if top_k == 1 else ranked[:top_k])
    return results


class QuestionAnsweringPipeline(Pipeline):
  """{"score", "start", "end", "answer"}: the best context span (character offsets into the
  context), scored as transformers does. A context longer than `max_length` leaves room for is
  cut into overlapping windows (the tokenizer's `return_overflowing_tokens` with `stride` =
  `doc_stride` tokens shared by neighbours, default min(128, max_length // 2)); in each window a
  softmax over the start and the end logits of its context tokens gives score = p(start) *
  p(end), end >= start, at most `max_answer_len` tokens, and the best span of all windows wins."""

  task = "question-answering"

  def __call__(self, inputs=None, *, question=None, context=None, **kwargs):
    if inputs is None:
      if question is None or context is None:
        raise ValueError("question-answering needs question= and context= (or dicts of them)")
      if isinstance(question, str):
        inputs = {"question": question, "context": context}
      else:
        inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
    return super().__call__(inputs, **kwargs)

  def _process(
    self, batch: list[Mapping], max_answer_len: int = 15, doc_stride: int | None = None
  ) -> list:
    tok = self.tokenizer
    rows, windows = [], []  # windows: (input index, first context position, context offsets)
    for index, item in enumerate(batch):
      question, context = item["question"], item["context"]
      q_len = len(tok(question, add_special_tokens=False)["input_ids"])
      room = self.max_length - q_len - 3
      if room < 1:
        raise ValueError(f"the question {question!r} leaves no room for the context")
      # A default stride must fit the room a short max_length leaves; a chosen one is checked
      # by the tokenizer (it must be smaller than the room).
      stride = min(128, self.max_length // 2, room - 1) if doc_stride is None else doc_stride
      enc = tok(
        question,
        context,
        max_length=self.max_length,
        truncation="only_second",
        return_overflowing_tokens=True,
        stride=stride,
        return_offsets_mapping=True,
      )
      for ids, types, spans in zip(enc["input_ids"], enc["token_type_ids"], enc["offset_mapping"]):
        first = q_len + 2  # [CLS] question [SEP]
        last = len(ids) - 1  # the closing [SEP]
        rows.append((list(ids), list(types)))
        if last <= first:
          raise ValueError(f"the context {context!r} has no tokens")
        windows.append((index, first, [tuple(s) for s in spans[first:last]]))
    best: dict[int, tuple[float, int, int]] = {}
    for (index, first, offsets), out in zip(windows, self._run(rows)):
      start, end, score = best_span(
        out.start_logits[first : first + len(offsets)],
        out.end_logits[first : first + len(offsets)],
        max_answer_len,
      )
      if index not in best or score > best[index][0]:  # the first window wins a tie
        best[index] = (score, offsets[start][0], offsets[end][1])
    results = []
    for index, item in enumerate(batch):
      score, begin, finish = best[index]
      results.append(
        {"score": score, "start": begin, "end": finish, "answer": item["context"][begin:finish]}
      )
    return results


def best_span(start_logits, end_logits, max_answer_len: int) -> tuple[int, int, float]:
  """The (start, end, score) maximizing p(start) * p(end) with start <= end < start +
  max_answer_len, p = softmax over the given (context) logits [context]."""
  p_start = _softmax(np.asarray(start_logits, np.float64))
  p_end = _softmax(np.asarray(end_logits, np.float64))
  scores = np.triu(np.tril(np.outer(p_start, p_end), max_answer_len - 1))
  start, end = np.unravel_index(int(np.argmax(scores)), scores.shape)
  return int(start), int(end), float(scores[start, end])


class FeatureExtractionPipeline(Pipeline):
  """The last hidden state of each input as nested lists [1][seq][hidden] (padding removed)."""

  task = "feature-extraction"

  def _process(self, batch: list[str]) -> list:
    rows = [self._encode(text) for text in batch]
    return [
      [np.asarray(out.last_hidden_state[: len(ids)], np.float32).tolist()]
      for (ids, _), out in zip(rows, self._run(rows))
    ]


_PIPELINES = {
  cls.task: cls
  for cls in (
    FillMaskPipeline,
    TextClassificationPipeline,
    QuestionAnsweringPipeline,
    FeatureExtractionPipeline,
  )
}


def _softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max())
  return e / e.sum()


def pipeline(
  task: str,
  model: str | os.PathLike,
  *,
  tokenizer: Any = None,
  batch_size: int = 8,
  max_length: int | None = None,
  **from_pretrained_kwargs: Any,
) -> Pipeline:
  """A pipeline for `task` on the checkpoint `model` (anything `af.from_pretrained` reads).

  Args:
    task: "fill-mask", "text-classification", "question-answering" or "feature-extraction".
    model: a saved model directory, a TF checkpoint or a Hugging Face Hub id.
    tokenizer: a spiece.model path or a tokenizer; None = the one saved with the checkpoint.
    batch_size: rows per model call.
    max_length: truncate inputs to this many tokens (default: max_position_embeddings).
    **from_pretrained_kwargs: passed to `af.from_pretrained` (dtype=, ...).
  Returns:
    A callable Pipeline; see each task's class for its results.
  """
  if task not in _PIPELINES:
    raise ValueError(f"Unknown pipeline task {task!r}; choose one of {sorted(_PIPELINES)}")
  linen_model, params = checkpoints.from_pretrained(
    model, _TASK_MODELS[task], **from_pretrained_kwargs
  )
  if tokenizer is None:
    tokenizer = load_tokenizer(model)
  elif isinstance(tokenizer, (str, os.PathLike)):
    tokenizer = load_tokenizer(tokenizer)
  return _PIPELINES[task](
    linen_model, params, tokenizer, batch_size=batch_size, max_length=max_length
  )
