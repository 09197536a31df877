"""The ALBERT task models: pretraining (MLM + SOP), masked LM, classification, multiple choice,
token classification and question answering.

Each model holds the backbone as `albert` (`_backbone` builds and runs it, the same way in every
model) and its head under transformers' names, so a checkpoint converts by renaming. The models
take one argument list, documented once at `AlbertModel.__call__`. Outputs are dataclasses with
transformers' field names; models return logits (the losses live in `albert_flax.train.losses`).
The backbone has one name, `AlbertModule`; `AlbertModel` is the task model without a head (see
its docstring for why it is not an alias).

Head parameters:
    predictions/{dense [H, E], LayerNorm [E], bias [V]}   MLM head; its decoder is the word table
    sop_classifier/classifier [H, 2]                       sentence-order head on the pooler
    classifier [H, num_labels]   (sequence / token classification; [H, 1] for multiple choice)
    qa_outputs [H, 2]                                      span start / end

Every task model is here (about 500 lines), as in transformers' modeling_albert.py: each one is a
short head on the same backbone call, and each keeps the full signature so that help() and an
editor show a user its arguments.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from albert_flax.config import AlbertConfig
from albert_flax.modeling import (
  AlbertModelOutput,
  AlbertModule,
  _zeros,
  activation_fn,
  dense,
  layer_norm,
)

Array = jax.Array


# The backbone's two optional outputs, which every task output carries after its own fields.
_BACKBONE_FIELDS_DOC = """
    hidden_states: tuple of L + 1 arrays [batch, seq, hidden] (compute dtype) from the backbone
      when called with output_hidden_states=True, else None.
    attentions: L * inner_group_num arrays [batch, heads, seq, seq] float32 (attention
      probabilities) when called with output_attentions=True, else None.
"""


def _task_output(cls: type) -> type:
  """A flax.struct.dataclass whose docstring gains the backbone fields' documentation (the class
  declares them, typed, after its own fields; `AlbertModelOutput` documents their meaning)."""
  cls.__doc__ = cls.__doc__.rstrip() + "\n" + _BACKBONE_FIELDS_DOC
  return flax.struct.dataclass(cls)


@_task_output
class AlbertForPreTrainingOutput:
  """What `AlbertForPreTraining` returns (V = config.vocab_size, P = masked positions per row).

  Fields:
    prediction_logits: float32 MLM logits, [batch, P, vocab] at `masked_positions` [batch, P]
      when given, else [batch, seq, vocab] at every position.
    sop_logits: [batch, 2] float32 sentence-order logits (class 1 = segments swapped)."""

  prediction_logits: Array  # [batch, seq, V], or [batch, P, V] at `masked_positions`
  sop_logits: Array  # [batch, 2]
  hidden_states: tuple[Array, ...] | None = None
  attentions: tuple[Array, ...] | None = None


@_task_output
class MaskedLMOutput:
  """What `AlbertForMaskedLM` returns.

  Fields:
    logits: float32 MLM logits, [batch, P, vocab] at `masked_positions` [batch, P] when given,
      else [batch, seq, vocab]."""

  logits: Array  # [batch, seq, V] or [batch, P, V]
  hidden_states: tuple[Array, ...] | None = None
  attentions: tuple[Array, ...] | None = None


@_task_output
class SequenceClassifierOutput:
  """What `AlbertForSequenceClassification` returns.

  Fields:
    logits: [batch, num_labels] float32 (num_labels == 1: [batch, 1] regression scores)."""

  logits: Array  # [batch, num_labels]
  hidden_states: tuple[Array, ...] | None = None
  attentions: tuple[Array, ...] | None = None


@_task_output
class MultipleChoiceModelOutput:
  """What `AlbertForMultipleChoice` returns. The choices are flattened into the batch inside the
  model, so `batch` in hidden_states and attentions is batch * num_choices.

  Fields:
    logits: [batch, num_choices] float32, one score per choice (softmax over choices)."""

  logits: Array  # [batch, num_choices]
  hidden_states: tuple[Array, ...] | None = None
  attentions: tuple[Array, ...] | None = None


@_task_output
class TokenClassifierOutput:
  """What `AlbertForTokenClassification` returns.

  Fields:
    logits: [batch, seq, num_labels] float32, one row per token (padding included)."""

  logits: Array  # [batch, seq, num_labels]
  hidden_states: tuple[Array, ...] | None = None
  attentions: tuple[Array, ...] | None = None


@_task_output
class QuestionAnsweringModelOutput:
  """What `AlbertForQuestionAnswering` returns.

  Fields:
    start_logits: [batch, seq] float32 span-start scores per token.
    end_logits: [batch, seq] float32 span-end scores per token."""

  start_logits: Array  # [batch, seq]
  end_logits: Array  # [batch, seq]
  hidden_states: tuple[Array, ...] | None = None
  attentions: tuple[Array, ...] | None = None


def gather_positions(hidden: Array, positions: Array) -> Array:
  """hidden [batch, seq, H], positions [batch, P] -> [batch, P, H]."""
  if positions.ndim != 2 or positions.shape[0] != hidden.shape[0]:
    raise ValueError(
      f"masked_positions must be [batch, P] with batch {hidden.shape[0]}, "
      f"got shape {positions.shape}"
    )
  return jnp.take_along_axis(hidden, positions[..., None].astype(jnp.int32), axis=1)


def _check_positions(positions, seq_len: int) -> None:
  if positions is None or isinstance(positions, jax.core.Tracer) or np.size(positions) == 0:
    return
  host = np.asarray(positions)
  if host.min() < 0 or host.max() >= seq_len:
    raise ValueError(f"masked_positions holds values outside [0, {seq_len})")


class AlbertMLMHead(nn.Module):
  """dense H->E, activation, LayerNorm over E, then the tied word table E->V plus its own bias."""

  config: AlbertConfig

  @nn.compact
  def __call__(self, hidden: Array, albert: AlbertModule) -> Array:
    """hidden: [..., H] -> logits [..., V] float32."""
    cfg = self.config
    x = dense(cfg, cfg.embedding_size, ("hidden", "embedding"), "dense")(hidden)
    # The activation in float32 (a no-op cast in float32), as in the layers.
    x = layer_norm(cfg, "LayerNorm")(activation_fn(cfg.hidden_act)(x.astype(jnp.float32)))
    bias = self.param("bias", _zeros(("vocab",)), (cfg.vocab_size,), cfg.parameter_dtype)
    return albert.embeddings.attend(x) + jnp.asarray(bias, jnp.float32)


def _classifier_dropout(cfg: AlbertConfig, name: str | None = None) -> nn.Dropout:
  """The heads' dropout (classifier_dropout_prob, else hidden_dropout_prob). Its name (given, or
  flax's automatic one) seeds its mask: names are as they were when the model was written."""
  rate = cfg.classifier_dropout_prob
  return nn.Dropout(cfg.hidden_dropout_prob if rate is None else rate, name=name)


def _backbone(
  cfg: AlbertConfig,
  inputs: tuple,
  deterministic: bool,
  output_hidden_states: bool,
  output_attentions: bool,
  pooling: bool = True,
) -> tuple[AlbertModule, AlbertModelOutput]:
  """Build and run the backbone inside a task model's compact `__call__`: `AlbertModule` under the
  name `albert` (every checkpoint and converter expects it there), on `inputs` = (input_ids,
  attention_mask, token_type_ids, position_ids). Returns the module (the MLM heads use its word
  table) and its output."""
  albert = AlbertModule(cfg, add_pooling_layer=pooling, name="albert")
  return albert, albert(*inputs, deterministic, output_hidden_states, output_attentions)


class AlbertModel(nn.Module):
  """The task model without a head: the backbone under `albert`, as in every task model, so its
  checkpoints share their parameter tree (`albert/...`) with the others'. `last_hidden_state`
  [batch, seq, H] and `pooler_output` [batch, H].

  `AlbertModule` (albert_flax.modeling) is the backbone itself, the module to embed in your own
  model under the name `albert`; it is not an alias of this class: its parameters sit at the top
  of its tree, this class's under `albert/`.

  Attributes:
    config: the model's AlbertConfig.
    add_pooling_layer: False drops the pooler (pooler_output is then None).
  """

  config: AlbertConfig
  add_pooling_layer: bool = True

  @nn.compact
  def __call__(
    self,
    input_ids,
    attention_mask=None,
    token_type_ids=None,
    position_ids=None,
    deterministic: bool = True,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
  ) -> AlbertModelOutput:
    """Run the backbone. These arguments are every task model's (`masked_positions` is the MLM
    heads' own).

    Args:
      input_ids: [batch, seq] integer token ids in [0, vocab_size).
      attention_mask: [batch, seq], 1 (or any value > 0) = token, 0 = padding; None = all ones.
      token_type_ids: [batch, seq] integer segment ids in [0, type_vocab_size); None = zeros.
      position_ids: [batch, seq] integer positions; None = 0 .. seq-1.
      deterministic: True (default) disables dropout; False applies it (in the backbone and in
        the head's dropout, if it has one) and needs `rngs={"dropout": key}` in `apply`.
      output_hidden_states: also return the backbone's per-step hidden states.
      output_attentions: also return every layer's attention probabilities.

    Returns:
      AlbertModelOutput: last_hidden_state [batch, seq, hidden] (compute dtype), pooler_output
      [batch, hidden] float32 (None without the pooler), hidden_states or None.

    Raises:
      ValueError: on bad inputs (see `validate_inputs`).
    """
    inputs = input_ids, attention_mask, token_type_ids, position_ids
    flags = deterministic, output_hidden_states, output_attentions
    return _backbone(self.config, inputs, *flags, pooling=self.add_pooling_layer)[1]


class _SOPHead(nn.Module):
  config: AlbertConfig

  @nn.compact
  def __call__(self, pooled: Array) -> Array:
    logits = dense(self.config, 2, ("hidden", "classes"), "classifier")(pooled)
    return logits.astype(jnp.float32)


class AlbertForPreTraining(nn.Module):
  """MLM + sentence-order prediction. Given `masked_positions` [batch, P] the MLM head runs only
  there, so prediction_logits is [batch, P, V] instead of [batch, seq, V]."""

  config: AlbertConfig

  @nn.compact
  def __call__(
    self,
    input_ids,
    attention_mask=None,
    token_type_ids=None,
    position_ids=None,
    masked_positions=None,
    deterministic: bool = True,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
  ) -> AlbertForPreTrainingOutput:
    """MLM and SOP logits for input_ids [batch, seq].

    Args: those of `AlbertModel.__call__` (deterministic=False needs `rngs={"dropout": key}`
      and applies dropout to the pooled output before the SOP classifier), and
      masked_positions: [batch, P] integer positions in [0, seq) to run the MLM head on
        (unused slots of the pretraining data hold position 0 with weight 0); None = every
        position.

    Returns:
      AlbertForPreTrainingOutput: prediction_logits [batch, P, vocab] (or [batch, seq, vocab]
      without masked_positions) and sop_logits [batch, 2], both float32.

    Raises:
      ValueError: on bad inputs (see `validate_inputs`) or concrete masked_positions outside
        [0, seq).
    """
    inputs = input_ids, attention_mask, token_type_ids, position_ids
    albert, out = _backbone(
      self.config, inputs, deterministic, output_hidden_states, output_attentions
    )
    prediction_logits = _masked_lm(self.config, albert, out, masked_positions)
    dropout = _classifier_dropout(self.config, name="sop_dropout")
    pooled = dropout(out.pooler_output, deterministic=deterministic)
    sop_logits = _SOPHead(self.config, name="sop_classifier")(pooled)
    return AlbertForPreTrainingOutput(
      prediction_logits, sop_logits, out.hidden_states, out.attentions
    )


def _masked_lm(
  cfg: AlbertConfig, albert: AlbertModule, out: AlbertModelOutput, masked_positions
) -> Array:
  """The MLM head (`predictions`) on the backbone's output, at `masked_positions` [batch, P]
  when given: logits [batch, P or seq, vocab] float32."""
  hidden = out.last_hidden_state
  if masked_positions is not None:
    _check_positions(masked_positions, hidden.shape[1])
    hidden = gather_positions(hidden, masked_positions)
  return AlbertMLMHead(cfg, name="predictions")(hidden, albert)


class AlbertForMaskedLM(nn.Module):
  """MLM head on every position (or on `masked_positions` [batch, P] when given)."""

  config: AlbertConfig

  @nn.compact
  def __call__(
    self,
    input_ids,
    attention_mask=None,
    token_type_ids=None,
    position_ids=None,
    masked_positions=None,
    deterministic: bool = True,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
  ) -> MaskedLMOutput:
    """MLM logits for input_ids [batch, seq].

    Args: those of `AlbertForPreTraining.__call__` (deterministic=False needs
      `rngs={"dropout": key}`; the head itself has no dropout).

    Returns:
      MaskedLMOutput: logits [batch, P, vocab] (or [batch, seq, vocab] without
      masked_positions) float32.
    """
    inputs = input_ids, attention_mask, token_type_ids, position_ids
    albert, out = _backbone(
      self.config, inputs, deterministic, output_hidden_states, output_attentions, pooling=False
    )
    logits = _masked_lm(self.config, albert, out, masked_positions)
    return MaskedLMOutput(logits, out.hidden_states, out.attentions)


class AlbertForSequenceClassification(nn.Module):
  """Pooler -> dropout -> [H, num_labels]. num_labels == 1 is regression (see losses)."""

  config: AlbertConfig

  @nn.compact
  def __call__(
    self,
    input_ids,
    attention_mask=None,
    token_type_ids=None,
    position_ids=None,
    deterministic: bool = True,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
  ) -> SequenceClassifierOutput:
    """Classify each sequence of input_ids [batch, seq] from the pooled first token.

    Args: those of `AlbertModel.__call__` (deterministic=False needs `rngs={"dropout": key}`
      and applies the classifier dropout to the pooled output too).

    Returns:
      SequenceClassifierOutput: logits [batch, num_labels] float32.
    """
    cfg = self.config
    inputs = input_ids, attention_mask, token_type_ids, position_ids
    _, out = _backbone(cfg, inputs, deterministic, output_hidden_states, output_attentions)
    pooled = _classifier_dropout(cfg)(out.pooler_output, deterministic=deterministic)
    logits = dense(cfg, cfg.num_labels, ("hidden", "classes"), "classifier")(pooled)
    return SequenceClassifierOutput(logits.astype(jnp.float32), out.hidden_states, out.attentions)


class AlbertForMultipleChoice(nn.Module):
  """Inputs [batch, choices, seq]; each choice scored by pooler -> dropout -> [H, 1]."""

  config: AlbertConfig

  @nn.compact
  def __call__(
    self,
    input_ids,
    attention_mask=None,
    token_type_ids=None,
    position_ids=None,
    deterministic: bool = True,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
  ) -> MultipleChoiceModelOutput:
    """Score each choice.

    Args: those of `AlbertModel.__call__`, each input [batch, num_choices, seq] (or None); the
      choices are flattened into the batch (hidden states [batch * num_choices, seq, hidden]).
      deterministic=False needs `rngs={"dropout": key}` and applies the classifier dropout too.

    Returns:
      MultipleChoiceModelOutput: logits [batch, num_choices] float32.

    Raises:
      ValueError: when input_ids is not 3-D or the other inputs differ in shape from it.
    """
    cfg = self.config
    shape = np.shape(input_ids)
    if len(shape) != 3:
      raise ValueError(
        f"AlbertForMultipleChoice takes input_ids [batch, choices, seq], got {shape}"
      )

    def flat(x):
      if x is None:
        return None
      if tuple(np.shape(x)) != shape:
        raise ValueError(f"inputs must all be [batch, choices, seq] = {shape}, got {np.shape(x)}")
      return jnp.reshape(x, (-1, shape[-1]))

    inputs = tuple(map(flat, (input_ids, attention_mask, token_type_ids, position_ids)))
    _, out = _backbone(cfg, inputs, deterministic, output_hidden_states, output_attentions)
    pooled = _classifier_dropout(cfg)(out.pooler_output, deterministic=deterministic)
    logits = dense(cfg, 1, ("hidden", "classes"), "classifier")(pooled)
    return MultipleChoiceModelOutput(
      logits.astype(jnp.float32).reshape(shape[0], shape[1]), out.hidden_states, out.attentions
    )


class AlbertForTokenClassification(nn.Module):
  """Per-token logits [batch, seq, num_labels] (NER and the like)."""

  config: AlbertConfig

  @nn.compact
  def __call__(
    self,
    input_ids,
    attention_mask=None,
    token_type_ids=None,
    position_ids=None,
    deterministic: bool = True,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
  ) -> TokenClassifierOutput:
    """Classify each token of input_ids [batch, seq].

    Args: those of `AlbertModel.__call__` (deterministic=False needs `rngs={"dropout": key}`
      and applies the classifier dropout to every hidden state too).

    Returns:
      TokenClassifierOutput: logits [batch, seq, num_labels] float32.
    """
    cfg = self.config
    inputs = input_ids, attention_mask, token_type_ids, position_ids
    _, out = _backbone(
      cfg, inputs, deterministic, output_hidden_states, output_attentions, pooling=False
    )
    hidden = _classifier_dropout(cfg)(out.last_hidden_state, deterministic=deterministic)
    logits = dense(cfg, cfg.num_labels, ("hidden", "classes"), "classifier")(hidden)
    return TokenClassifierOutput(logits.astype(jnp.float32), out.hidden_states, out.attentions)


class AlbertForQuestionAnswering(nn.Module):
  """Span start / end logits [batch, seq] from [H, 2]."""

  config: AlbertConfig

  @nn.compact
  def __call__(
    self,
    input_ids,
    attention_mask=None,
    token_type_ids=None,
    position_ids=None,
    deterministic: bool = True,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
  ) -> QuestionAnsweringModelOutput:
    """Span start and end scores for every token of input_ids [batch, seq].

    Args: those of `AlbertModel.__call__` (deterministic=False needs `rngs={"dropout": key}`;
      the head itself has no dropout, as in transformers).

    Returns:
      QuestionAnsweringModelOutput: start_logits and end_logits, each [batch, seq] float32.
    """
    cfg = self.config
    inputs = input_ids, attention_mask, token_type_ids, position_ids
    _, out = _backbone(
      cfg, inputs, deterministic, output_hidden_states, output_attentions, pooling=False
    )
    logits = dense(cfg, 2, ("hidden", "classes"), "qa_outputs")(out.last_hidden_state)
    logits = logits.astype(jnp.float32)
    return QuestionAnsweringModelOutput(
      logits[..., 0], logits[..., 1], out.hidden_states, out.attentions
    )


# Class name -> class, for code that picks a task model by name (checkpoints, CLIs).
MODEL_CLASSES = {
  cls.__name__: cls
  for cls in (
    AlbertModel,
    AlbertForPreTraining,
    AlbertForMaskedLM,
    AlbertForSequenceClassification,
    AlbertForMultipleChoice,
    AlbertForTokenClassification,
    AlbertForQuestionAnswering,
  )
}
