"""Losses and metrics as weighted global sums, in float32.

Every function returns a `(sum, weight)` pair instead of a mean: a mean is taken once, after the
sums of all devices, micro-batches or eval batches are added, so the result is the same however
the batch was split (`albert_flax.training` relies on this). `ratio(sum, weight)` divides safely.

The pretraining objective is ALBERT's: masked-LM cross-entropy averaged over the real masked
positions (`masked_lm_weights` = 1, padding = 0; the original divides by sum(weights) + 1e-5), plus
sentence-order cross-entropy averaged over the examples.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Stat = tuple[Array, Array]  # (weighted sum, total weight)


def _weights(labels: Array, weights: Array | None) -> Array:
  if weights is None:
    return jnp.ones(labels.shape, jnp.float32)
  if weights.shape != labels.shape:
    raise ValueError(f"weights shape {weights.shape} does not match labels shape {labels.shape}")
  return weights.astype(jnp.float32)


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
    raise ValueError(f"logits {logits.shape} and labels {labels.shape} disagree on the leading "
                     "dims")
  w = _weights(labels, weights)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                           labels.astype(jnp.int32))
  return jnp.sum(losses * w), jnp.sum(w)


def weighted_accuracy(logits: Array, labels: Array, weights: Array | None = None) -> Stat:
  """(sum of weights where argmax == label, sum of weights). Shapes as weighted_cross_entropy."""
  if logits.shape[:-1] != labels.shape:
    raise ValueError(f"logits {logits.shape} and labels {labels.shape} disagree on the leading "
                     "dims")
  w = _weights(labels, weights)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return jnp.sum(correct * w), jnp.sum(w)


def weighted_mean_squared_error(predictions: Array, targets: Array,
                                weights: Array | None = None) -> Stat:
  """(sum of weight * (prediction - target)^2, sum of weights); predictions/targets [...]."""
  if predictions.shape != targets.shape:
    raise ValueError(f"predictions {predictions.shape} and targets {targets.shape} differ")
  w = _weights(targets, weights)
  err = (predictions.astype(jnp.float32) - targets.astype(jnp.float32)) ** 2
  return jnp.sum(err * w), jnp.sum(w)


def ratio(total: Array, weight: Array) -> Array:
  """total / weight, and 0 where weight is 0 (a batch with no masked positions)."""
  total = jnp.asarray(total, jnp.float32)
  weight = jnp.asarray(weight, jnp.float32)
  return jnp.where(weight > 0, total / jnp.where(weight > 0, weight, 1.0), 0.0)


# ------------------------------------------------------------------------------- pretraining

PRETRAINING_LOSSES = ("masked_lm_loss", "sentence_order_loss")


def pretraining_stats(prediction_logits: Array, sop_logits: Array,
                      batch: Mapping[str, Array]) -> dict[str, Stat]:
  """MLM and SOP losses and accuracies of one (micro-)batch as (sum, weight) pairs.

  Args:
    prediction_logits: [batch, P, V] logits at `masked_lm_positions`.
    sop_logits: [batch, 2].
    batch: masked_lm_ids, masked_lm_weights [batch, P]; sentence_order_label [batch]
      (1 = swapped).
  Returns:
    {"masked_lm_loss", "masked_lm_accuracy", "sentence_order_loss", "sentence_order_accuracy"}.
  """
  ids, weights = batch["masked_lm_ids"], batch["masked_lm_weights"]
  sop = batch["sentence_order_label"]
  return {
      "masked_lm_loss": weighted_cross_entropy(prediction_logits, ids, weights),
      "masked_lm_accuracy": weighted_accuracy(prediction_logits, ids, weights),
      "sentence_order_loss": weighted_cross_entropy(sop_logits, sop),
      "sentence_order_accuracy": weighted_accuracy(sop_logits, sop),
  }


def pretraining_loss_weights(batch: Mapping[str, Any]) -> dict[str, Array]:
  """The denominators of the two loss terms over a whole batch (they depend on data only).

  masked_lm_loss: sum of masked_lm_weights; sentence_order_loss: number of examples.
  """
  return {
      "masked_lm_loss": jnp.sum(jnp.asarray(batch["masked_lm_weights"], jnp.float32)),
      "sentence_order_loss": jnp.asarray(jnp.shape(batch["sentence_order_label"])[0],
                                         jnp.float32),
  }
