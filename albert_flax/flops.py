"""Model FLOPs of ALBERT, counted analytically from the shapes.

The benchmarks' MFU (benchmarks/bench_mfu.py) and the TPU compile report
(`albert_flax.train.aot`) both use this formula. XLA's `cost_analysis` is no substitute: it counts
the body of a while loop once, so it undercounts the L applications of the scanned shared layer.
"""

from __future__ import annotations

from albert_flax.config import AlbertConfig


def model_flops_per_token(
  num_layers: int,
  hidden: int,
  intermediate: int,
  seq: int,
  embedding: int,
  vocab: int,
  num_predictions: int,
  training: bool = True,
) -> float:
  """Matmul FLOPs per token of ALBERT pretraining (multiply-add = 2 FLOPs).

  training: 6*L*(4H^2 + 2*H*I) + 12*L*S*H + 6*E*H + 6*(H*E + E*V)*P/S, i.e. 3x the forward
  (forward + two backward matmuls) of: the QKVO and FFN matmuls, the attention scores and
  context (QK^T and PV: 2*S*H each, forward), the E->H projection, and the MLM head
  (H->E dense and the tied E->V decoder) on the P gathered positions of every S. The pooler and
  SOP head (per sequence, not per token) are left out. forward only: one third of it.
  num_predictions=0 leaves the MLM head out (fine-tuning: the task heads are per sequence or
  tiny).
  """
  per_token = (
    6 * num_layers * (4 * hidden**2 + 2 * hidden * intermediate)
    + 12 * num_layers * seq * hidden
    + 6 * embedding * hidden
    + 6 * (hidden * embedding + embedding * vocab) * num_predictions / seq
  )
  return per_token if training else per_token / 3


def model_flops_per_step(
  config: AlbertConfig, batch: int, seq: int, num_predictions: int = 0, training: bool = True
) -> float:
  """`model_flops_per_token` of `config` times the batch's tokens ([batch, seq])."""
  return (
    batch
    * seq
    * model_flops_per_token(
      config.num_hidden_layers,
      config.hidden_size,
      config.intermediate_size,
      seq,
      config.embedding_size,
      config.vocab_size,
      num_predictions,
      training=training,
    )
  )
