"""Losses and metrics as weighted global sums, in float32: pretraining's and every task head's.

Every function returns a `(sum, weight)` pair instead of a mean: a mean is taken once, after the
sums of all devices, micro-batches or eval batches are added, so the result is the same however
the batch was split (`albert_flax.train.training` relies on this). `ratio(sum, weight)` divides
safely; `mean_loss` turns pairs into the loss transformers reports (torch's `reduction="mean"`).
Each takes optional `weights` (1 = real example, 0 = padding added to fill a batch) so that
padding never counts; with all weights 1 the mean is transformers' loss exactly.

The pretraining objective is ALBERT's: masked-LM cross-entropy averaged over the real masked
positions (`masked_lm_weights` = 1, padding = 0; the original divides by sum(weights) + 1e-5), plus
the sentence loss averaged over the examples (`pretraining_stats`, `pretraining_stats_fn`): the
binary head on the pooled [CLS] scores sentence order ("sop", ALBERT: `sentence_order_*` metrics)
or next sentence ("nsp", BERT: `next_sentence_*`); "none" trains MLM only. The label is the
batch's `sentence_order_label` either way: 0 = in order / B is the next segment, 1 = swapped / B is
random (transformers' `sentence_order_label`, `next_sentence_label`).

The task heads' losses are computed as transformers' PyTorch `AlbertFor*` models compute them:

    sequence_classification_loss   dispatch on problem_type as AlbertForSequenceClassification
    classification_loss            softmax cross-entropy, integer labels          [B, C], [B]
    regression_loss                mean squared error (num_labels == 1)           [B, 1], [B]
    multi_label_loss               sigmoid binary cross-entropy                   [B, C], [B, C]
    multiple_choice_loss           cross-entropy over the choices                 [B, C], [B]
    token_classification_loss      cross-entropy, label -100 ignored              [B, S, C], [B, S]
    span_loss                      (start, end) CE pairs; mean = their average    [B, S] x2, [B] x2

Logits are cast to float32 first (the heads already return float32; bf16 callers are covered).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Stat = tuple[Array, Array]  # (weighted sum, total weight)

IGNORE_INDEX = -100  # torch.nn.CrossEntropyLoss's default ignore_index, used by transformers


def _weights(weights: Array | None, shape: tuple[int, ...]) -> Array:
  """`weights` as float32 of `shape`, or ones when None."""
  if weights is None:
    return jnp.ones(shape, jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  if weights.shape != tuple(shape):
    raise ValueError(f"weights must have shape {tuple(shape)}, got {weights.shape}")
  return weights


def _stat(values: Array, weights: Array) -> Stat:
  return jnp.sum(values * weights), jnp.sum(weights)


def weighted_cross_entropy(logits: Array, labels: Array, weights: Array | None = None) -> Stat:
  """Softmax cross-entropy summed with weights.

  Args:
    logits: [..., num_classes] (any float dtype; computed in float32).
    labels: [...] integer class ids.
    weights: [...] or None (all ones).
  Returns:
    (sum of weight * loss, sum of weights), float32 scalars.
  """
  if logits.shape[:-1] != labels.shape:
    raise ValueError(
      f"logits {logits.shape} and labels {labels.shape} disagree on their leading dims"
    )
  w = _weights(weights, labels.shape)
  losses = optax.softmax_cross_entropy_with_integer_labels(
    logits.astype(jnp.float32), labels.astype(jnp.int32)
  )
  return jnp.sum(losses * w), jnp.sum(w)


def weighted_accuracy(logits: Array, labels: Array, weights: Array | None = None) -> Stat:
  """(sum of weights where argmax == label, sum of weights). Shapes as weighted_cross_entropy."""
  if logits.shape[:-1] != labels.shape:
    raise ValueError(
      f"logits {logits.shape} and labels {labels.shape} disagree on their leading dims"
    )
  w = _weights(weights, labels.shape)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return jnp.sum(correct * w), jnp.sum(w)


def ratio(total: Array, weight: Array) -> Array:
  """total / weight, and 0 where weight is 0 (a batch with no masked positions)."""
  total = jnp.asarray(total, jnp.float32)
  weight = jnp.asarray(weight, jnp.float32)
  return jnp.where(weight > 0, total / jnp.where(weight > 0, weight, 1.0), 0.0)


# ------------------------------------------------------------------------------- pretraining

PRETRAINING_LOSSES = ("masked_lm_loss", "sentence_order_loss")
SENTENCE_LOSSES = ("sop", "nsp", "none")
# The metric prefix of each sentence loss's term (and of the pair kind it is evaluated on).
SENTENCE_METRIC = {"sop": "sentence_order", "nsp": "next_sentence"}


def check_sentence_loss(sentence_loss: str) -> None:
  if sentence_loss not in SENTENCE_LOSSES:
    raise ValueError(f"sentence_loss must be one of {SENTENCE_LOSSES}, got {sentence_loss!r}")


def pretraining_loss_names(sentence_loss: str = "sop") -> tuple[str, ...]:
  """The objective's terms: masked_lm_loss, and the sentence loss's term unless "none"."""
  check_sentence_loss(sentence_loss)
  if sentence_loss == "none":
    return ("masked_lm_loss",)
  return ("masked_lm_loss", f"{SENTENCE_METRIC[sentence_loss]}_loss")


def pretraining_stats(
  prediction_logits: Array,
  sop_logits: Array,
  batch: Mapping[str, Array],
  sentence_loss: str = "sop",
) -> dict[str, Stat]:
  """MLM and sentence-head losses and accuracies of one (micro-)batch as (sum, weight) pairs.

  Args:
    prediction_logits: [batch, P, V] logits at `masked_lm_positions`.
    sop_logits: [batch, 2], the binary sentence head.
    batch: masked_lm_ids, masked_lm_weights [batch, P]; sentence_order_label [batch]
      (1 = swapped / random next segment).
    sentence_loss: names the head's stats: "sop" sentence_order_*, "nsp" next_sentence_*, "none"
      none (the head is left out of the graph, so it gets no gradient).
  Returns:
    {"masked_lm_loss", "masked_lm_accuracy", "<prefix>_loss", "<prefix>_accuracy"}.
  """
  check_sentence_loss(sentence_loss)
  ids, weights = batch["masked_lm_ids"], batch["masked_lm_weights"]
  stats = {
    "masked_lm_loss": weighted_cross_entropy(prediction_logits, ids, weights),
    "masked_lm_accuracy": weighted_accuracy(prediction_logits, ids, weights),
  }
  if sentence_loss != "none":
    label, prefix = batch["sentence_order_label"], SENTENCE_METRIC[sentence_loss]
    stats[f"{prefix}_loss"] = weighted_cross_entropy(sop_logits, label)
    stats[f"{prefix}_accuracy"] = weighted_accuracy(sop_logits, label)
  return stats


def pretraining_loss_weights(batch: Mapping[str, Any]) -> dict[str, Array]:
  """The denominators of the two loss terms over a whole batch (they depend on data only).

  masked_lm_loss: sum of masked_lm_weights; sentence_order_loss: number of examples.
  """
  return pretraining_loss_weights_fn("sop")(batch)


def pretraining_loss_weights_fn(sentence_loss: str = "sop") -> Callable[..., dict[str, Array]]:
  """loss_weights_fn(batch) of `sentence_loss` for `make_train_step`: masked_lm_loss over the sum
  of masked_lm_weights, the sentence term (absent for "none") over the number of examples."""
  names = pretraining_loss_names(sentence_loss)

  def loss_weights(batch):
    totals = {"masked_lm_loss": jnp.sum(jnp.asarray(batch["masked_lm_weights"], jnp.float32))}
    for name in names[1:]:
      totals[name] = jnp.asarray(jnp.shape(batch["sentence_order_label"])[0], jnp.float32)
    return totals

  return loss_weights


def pretraining_stats_fn(model: Any, sentence_loss: str = "sop") -> Callable[..., dict[str, Stat]]:
  """stats_fn(params, batch, rng, train) of an `AlbertForPreTraining` for
  `albert_flax.train.training.make_train_step` / `make_eval_step`: the model on the batch's
  `masked_lm_positions` (dropout on when `train`), then `pretraining_stats`."""
  check_sentence_loss(sentence_loss)

  def stats_fn(params, batch, rng, train):
    out = apply_pretraining(model, params, batch, rng if train else None)
    return pretraining_stats(out.prediction_logits, out.sop_logits, batch, sentence_loss)

  return stats_fn


def apply_pretraining(
  model: Any, params: Any, batch: Mapping[str, Array], rng: Array | None = None
):
  """An `AlbertForPreTraining` on a pretraining batch's inputs, its MLM head at the batch's
  `masked_lm_positions` [B, P]: prediction_logits [B, P, V], sop_logits [B, 2]. Dropout on
  (training mode) when given `rng`."""
  return model.apply(
    {"params": params},
    batch["input_ids"],
    batch["attention_mask"],
    batch["token_type_ids"],
    masked_positions=batch["masked_lm_positions"],
    deterministic=rng is None,
    rngs={"dropout": rng} if rng is not None else None,
  )


# ------------------------------------------------------------------------------- task heads


def mean_loss(*stats: Stat) -> Array:
  """The loss transformers reports: the mean of each (sum, weight) pair, averaged over pairs
  (one pair for most heads; start and end for `span_loss`). 0 where a weight is 0 (torch: nan)."""
  return sum(ratio(s, w) for s, w in stats) / len(stats)


def _check_labels(logits: Array, labels: Array, name: str) -> None:
  if jnp.asarray(labels).shape != logits.shape[:-1]:
    raise ValueError(
      f"{name}: labels must have shape {logits.shape[:-1]} for logits "
      f"{logits.shape}, got {jnp.asarray(labels).shape}"
    )


def classification_loss(logits: Array, labels: Array, weights: Array | None = None) -> Stat:
  """Softmax cross-entropy. logits [batch, num_labels], labels [batch] int in [0, num_labels)."""
  logits = jnp.asarray(logits, jnp.float32)
  _check_labels(logits, labels, "classification_loss")
  per_example = optax.softmax_cross_entropy_with_integer_labels(
    logits, jnp.asarray(labels, jnp.int32)
  )
  return _stat(per_example, _weights(weights, per_example.shape))


def regression_loss(logits: Array, labels: Array, weights: Array | None = None) -> Stat:
  """Mean squared error. logits [batch, 1] (or [batch]), labels [batch] float.

  transformers squeezes both sides for num_labels == 1: MSELoss(logits.squeeze(), labels.squeeze()).
  With num_labels > 1 (labels [batch, num_labels]) the mean runs over every element.
  """
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels, jnp.float32)
  if logits.ndim == 2 and logits.shape[-1] == 1:
    logits = logits[:, 0]
  if labels.ndim == 2 and labels.shape[-1] == 1:
    labels = labels[:, 0]
  if logits.shape != labels.shape:
    raise ValueError(f"regression_loss: logits {logits.shape} and labels {labels.shape} differ")
  per_item = jnp.square(logits - labels)
  if per_item.ndim == 2:
    per_item = jnp.mean(per_item, axis=-1)  # equal weight to every element of a real row
  return _stat(per_item, _weights(weights, per_item.shape))


def multi_label_loss(logits: Array, labels: Array, weights: Array | None = None) -> Stat:
  """Sigmoid binary cross-entropy averaged over every label of every example (BCEWithLogitsLoss).

  logits [batch, num_labels], labels [batch, num_labels] in {0, 1} (or soft targets in [0, 1]).
  """
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels, jnp.float32)
  if logits.shape != labels.shape:
    raise ValueError(
      f"multi_label_loss: labels must have the logits' shape {logits.shape}, got {labels.shape}"
    )
  per_example = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels), axis=-1)
  return _stat(per_example, _weights(weights, per_example.shape))


def sequence_classification_loss(
  logits: Array, labels: Array, problem_type: str | None = None, weights: Array | None = None
) -> Stat:
  """The loss AlbertForSequenceClassification computes: logits [batch, num_labels].

  problem_type None is inferred as transformers does: num_labels == 1 -> regression; integer
  labels -> single-label classification; otherwise multi-label.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if problem_type is None:
    if logits.shape[-1] == 1:
      problem_type = "regression"
    elif jnp.issubdtype(labels.dtype, jnp.integer):
      problem_type = "single_label_classification"
    else:
      problem_type = "multi_label_classification"
  if problem_type == "regression":
    return regression_loss(logits, labels, weights)
  if problem_type == "single_label_classification":
    return classification_loss(logits, labels, weights)
  if problem_type == "multi_label_classification":
    return multi_label_loss(logits, labels, weights)
  raise ValueError(f"Unknown problem_type {problem_type!r}")


def multiple_choice_loss(logits: Array, labels: Array, weights: Array | None = None) -> Stat:
  """Cross-entropy over choices. logits [batch, num_choices], labels [batch] (the right choice)."""
  return classification_loss(logits, labels, weights)


def token_classification_loss(
  logits: Array, labels: Array, weights: Array | None = None, ignore_index: int = IGNORE_INDEX
) -> Stat:
  """Cross-entropy over the tokens whose label is not `ignore_index`.

  logits [batch, seq, num_labels], labels [batch, seq] (-100 on padding, special tokens and
  continuation pieces). As torch's CrossEntropyLoss(ignore_index=-100) on the flattened tokens,
  the mean runs over all counted tokens of the batch (not per example); `weights` [batch] drops
  whole padding rows.
  """
  logits = jnp.asarray(logits, jnp.float32)
  _check_labels(logits, labels, "token_classification_loss")
  labels = jnp.asarray(labels, jnp.int32)
  counted = labels != ignore_index
  per_token = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(counted, labels, 0))
  token_weights = counted.astype(jnp.float32) * _weights(weights, labels.shape[:1])[:, None]
  return _stat(per_token, token_weights)


def span_loss(
  start_logits: Array,
  end_logits: Array,
  start_positions: Array,
  end_positions: Array,
  weights: Array | None = None,
) -> tuple[Stat, Stat]:
  """AlbertForQuestionAnswering's loss as (start, end) cross-entropy pairs; the loss itself is
  `mean_loss(start, end)` = (mean start CE + mean end CE) / 2.

  start_logits, end_logits [batch, seq]; start_positions, end_positions [batch]. As transformers
  does, positions are clamped to [0, seq] and position `seq` (outside the sequence) is ignored, so
  a span that fell outside the window costs nothing; each side is averaged over its own counted
  examples.
  """
  start_logits = jnp.asarray(start_logits, jnp.float32)
  end_logits = jnp.asarray(end_logits, jnp.float32)
  if start_logits.shape != end_logits.shape or start_logits.ndim != 2:
    raise ValueError(
      f"span_loss: start_logits {start_logits.shape} and end_logits "
      f"{end_logits.shape} must both be [batch, seq]"
    )
  seq = start_logits.shape[1]
  base = _weights(weights, start_logits.shape[:1])

  def one_side(logits, positions):
    positions = jnp.clip(jnp.asarray(positions, jnp.int32).reshape(-1), 0, seq)
    if positions.shape != logits.shape[:1]:
      raise ValueError(
        f"span_loss: positions must be [batch] = {logits.shape[:1]}, got {positions.shape}"
      )
    counted = positions != seq
    per_example = optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.where(counted, positions, 0)
    )
    return _stat(per_example, counted.astype(jnp.float32) * base)

  return one_side(start_logits, start_positions), one_side(end_logits, end_positions)
