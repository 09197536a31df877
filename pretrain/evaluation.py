"""Pretraining evaluation: masked-LM accuracy, and the binary sentence head scored on BOTH kinds of
pairs, whatever the run trains (the ALBERT paper's Table 5 cross-evaluation).

Each evaluation reads `eval_steps` batches of sentence-order pairs and `eval_steps` batches of
next-sentence pairs made from the held-back documents (made once, the same at every evaluation),
runs the one eval step on both, and reports:

    masked_lm_loss, masked_lm_accuracy     on the pairs of the kind the run trains on
                                           ("sop" and "none": sentence-order, "nsp": next-sentence)
    sentence_order_loss, _accuracy         the head on sentence-order pairs (SOP accuracy)
    next_sentence_loss, _accuracy          the head on next-sentence pairs (NSP accuracy)
    loss                                   the run's own objective on its own kind of pairs

A run with the default "sop" thus reports the metrics it reported before (same examples), plus
the next_sentence ones. Held-back static shards (`data.eval_files` = .array_record) hold one kind
of pair, written by `create_data`: only that kind is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from albert_flax.train import losses, training
from pretrain import data as data_lib
from pretrain.sentence_loss import training_pairs

PAIR_KINDS = ("sop", "nsp")


def eval_pair_kinds(config: Any) -> tuple[str, ...]:
  """The kinds of pairs an evaluation of `config` scores (both, unless eval data are shards)."""
  own = training_pairs(config.sentence_loss)
  if config.data.eval_files and data_lib.is_static(config.data.eval_files):
    return (own,)
  return (own,) + tuple(k for k in PAIR_KINDS if k != own)


def load_eval_sets(
  config: Any,
  make_iterator: Callable[[str], Any],
  to_global: Callable[[Iterator], Any],
) -> dict[str, list]:
  """{pair kind: `eval_steps` global batches of it}; `make_iterator(kind)` opens the held-back
  stream of that kind (a context manager), `to_global(iterator)` takes its next global batch."""
  sets = {}
  for kind in eval_pair_kinds(config):
    with make_iterator(kind) as it:
      sets[kind] = [to_global(it) for _ in range(config.eval_steps)]
  return sets


def evaluate(
  eval_step: Callable, params: Any, eval_sets: dict[str, list], sentence_loss: str
) -> dict[str, float]:
  """The metrics of the module docstring. `eval_step(params, batch)` returns the stats of
  `losses.pretraining_stats(..., sentence_loss="sop")` (the head's stats named sentence_order_*),
  renamed here by the kind of pairs each set holds; sums over each set, then one division."""
  own = training_pairs(sentence_loss)
  metrics: dict[str, float] = {}
  for kind, batches in eval_sets.items():
    total = None
    for batch in batches:
      total = training.add_stats(total, eval_step(params, batch))
    prefix = losses.SENTENCE_METRIC[kind]
    renamed = {k.replace("sentence_order", prefix, 1): v for k, v in total.items()}
    kind_metrics = training.stats_to_metrics(renamed)
    if kind != own:  # the MLM figures come from the run's own kind of pairs
      kind_metrics = {k: v for k, v in kind_metrics.items() if not k.startswith("masked_lm")}
    metrics.update(kind_metrics)
  metrics["loss"] = float(sum(metrics[n] for n in losses.pretraining_loss_names(sentence_loss)))
  return metrics
