"""The pretraining's inter-sentence loss (`config.sentence_loss`): what it trains, on which pairs.

    "sop"   sentence-order prediction (ALBERT, the default): consecutive segments, swapped half
            of the time (`pretrain.sop`);
    "nsp"   next-sentence prediction (BERT): half of the pairs take segment B from another
            document (`pretrain.nsp`);
    "none"  masked LM only (RoBERTa-style). The examples are the sentence-order pairs, so "none"
            and "sop" differ in the loss alone; the sentence head (the pooler and
            `sop_classifier`) takes no loss and is frozen: its parameters stay at their
            initialization (without the freeze, decoupled weight decay would still shrink them).

Labels (the batch's `sentence_order_label`, either kind): 0 = in order / B is the next segment,
1 = swapped / B is random, as transformers' `sentence_order_label` and `next_sentence_label`.
Whatever the run trains, its evaluation scores the same binary head on both kinds of pairs
(`pretrain.evaluation`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from albert_flax.train.losses import SENTENCE_LOSSES, check_sentence_loss

__all__ = ["SENTENCE_LOSSES", "check_sentence_loss", "training_pairs", "freeze_sentence_head"]

# Parameter paths of the sentence head: everything the sentence loss alone trains.
HEAD_PATHS = (("sop_classifier",), ("albert", "pooler"))


def training_pairs(sentence_loss: str) -> str:
  """The kind of pair (`ExampleConfig.sentence_pairs`) a run with `sentence_loss` trains on."""
  check_sentence_loss(sentence_loss)
  return "nsp" if sentence_loss == "nsp" else "sop"


def is_head_path(path: tuple) -> bool:
  """Whether a pytree key path (of params or updates) lies in the sentence head."""
  names = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
  return any(names[: len(p)] == p for p in HEAD_PATHS)


def freeze_sentence_head(
  optimizer: optax.GradientTransformation, sentence_loss: str
) -> optax.GradientTransformation:
  """`optimizer`, with zero updates for the sentence head when `sentence_loss` is "none"
  (unchanged otherwise: the same optimizer state as before this setting existed)."""
  check_sentence_loss(sentence_loss)
  if sentence_loss != "none":
    return optimizer

  def init(params: Any) -> optax.EmptyState:
    del params
    return optax.EmptyState()

  def update(updates: Any, state: optax.EmptyState, params: Any = None):
    del params
    zeroed = jax.tree_util.tree_map_with_path(
      lambda path, u: jnp.zeros_like(u) if is_head_path(path) else u, updates
    )
    return zeroed, state

  return optax.chain(optimizer, optax.GradientTransformation(init, update))
