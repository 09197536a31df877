"""ALBERT backbone in flax.linen: factorized embeddings and one shared layer scanned over depth.

Parameter tree of `AlbertModule` (names follow transformers' so conversion is a rename):

    embeddings/{word_embeddings, position_embeddings, token_type_embeddings}/embedding  [V|P|T, E]
    embeddings/LayerNorm/{scale, bias}                                                 [E]
    encoder/embedding_hidden_mapping_in/{kernel [E, H], bias [H]}
    encoder/albert_layer_groups_{g}/albert_layers_{i}/
        attention/{query, key, value}/{kernel [H, H], bias [H]}
        attention/dense/{kernel [H, H], bias [H]}, attention/LayerNorm/{scale, bias} [H]
        ffn/{kernel [H, I], bias [I]}, ffn_output/{kernel [I, H], bias [H]}
        full_layer_layer_norm/{scale, bias} [H]
    pooler/{kernel [H, H], bias [H]}                     (only with add_pooling_layer)

Kernels are [in, out] (the transpose of PyTorch's Linear.weight). Exactly one copy of each group's
layers exists whatever `num_hidden_layers` is: the group is applied with `nn.scan` and
`variable_broadcast="params"`, so depth costs activations, not weights, and compiles once. With
`cross_layer_sharing` other than "all" (the paper's Table 4), the unshared block's parameters
carry a leading [num_hidden_layers] axis at the same paths, stacked by the same scan
(`albert_flax.layer_sharing`).

One file, about 600 lines: the backbone is read top to bottom (embeddings, attention, the layer,
the scan over depth, the pooler) and its parts share private helpers; what stands apart lives
beside it (layer_sharing.py, precision.py, inputs.py, heads.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from albert_flax import layer_sharing, precision
from albert_flax.config import AlbertConfig
from albert_flax.inputs import validate_inputs

Array = jax.Array

# --------------------------------------------------------------------------- outputs


@flax.struct.dataclass
class AlbertModelOutput:
  """What the backbone (`AlbertModule`, `AlbertModel`) returns.

  Fields (hidden = config.hidden_size, L = config.num_hidden_layers):
    last_hidden_state: [batch, seq, hidden] in the compute dtype (`config.dtype`), the output of
      the last of the L steps.
    pooler_output: [batch, hidden] float32, tanh(dense(last_hidden_state[:, 0])); None when the
      module was built with add_pooling_layer=False.
    hidden_states: tuple of L + 1 arrays, each [batch, seq, hidden] in the compute dtype: the
      embeddings after the E->H projection, then the output of each step; None unless called
      with output_hidden_states=True.
    attentions: tuple of L * inner_group_num arrays, each [batch, heads, seq, seq] float32: the
      attention probabilities of every layer application in order (as transformers returns
      them); None unless called with output_attentions=True.
  """

  last_hidden_state: Array  # [batch, seq, hidden]
  pooler_output: Array | None = None  # [batch, hidden]
  # (embedding output after the E->H projection, then each of the L steps), each [batch, seq,
  # hidden]
  hidden_states: tuple[Array, ...] | None = None
  attentions: tuple[Array, ...] | None = None  # each [batch, heads, seq, seq]


# --------------------------------------------------------------------------- helpers


def activation_fn(name: str) -> Callable[[Array], Array]:
  """transformers' ACT2FN names as JAX functions."""
  table = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    # The tanh approximation: the original ALBERT's gelu, transformers' "gelu_new".
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + jnp.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "linear": lambda x: x,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
  }
  if name not in table:
    raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(table)}")
  return table[name]


def _normal(config: AlbertConfig, axes: tuple[str | None, ...], layer_index: Array | None = None):
  """ALBERT's normal init with logical axis names. `layer_index` (a traced step number inside the
  scan over depth) folds into the key, so that per-layer weights differ between layers: the scan
  cannot split the "params" stream for them without making the shared weights' init depend on
  the loop, which a broadcast variable must not."""
  init = nn.initializers.normal(config.initializer_range)
  if layer_index is not None:
    normal = init

    def init(key, shape, dtype=jnp.float32):
      return normal(jax.random.fold_in(key, layer_index), shape, dtype)

  return nn.with_logical_partitioning(init, axes)


def _zeros(axes: tuple[str | None, ...]):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


class Dense(nn.Module):
  """y = x @ kernel + bias with the parameters of `nn.Dense` ("kernel" [in, out], "bias" [out]).

  The GEMM takes compute-dtype operands and accumulates in float32 (`precision.dense_matmul`,
  whose backward GEMMs do the same); the bias is added in float32 and the result cast to the
  compute dtype. Inside a scanned group called through `precision.with_compute_copies` the
  compute-dtype kernel comes from that collection (cast once per step, outside the loop).
  """

  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[..., in] -> [..., features] in `dtype`."""
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    if self.has_variable(precision.COMPUTE_COPIES, "kernel"):
      kernel_copy = self.get_variable(precision.COMPUTE_COPIES, "kernel")
    else:
      kernel_copy = jnp.asarray(kernel, self.dtype)
    y = precision.dense_matmul(jnp.asarray(x, self.dtype), kernel_copy, kernel)
    return (y + jnp.asarray(bias, jnp.float32)).astype(self.dtype)


def dense(
  config: AlbertConfig,
  features: int,
  axes: tuple[str | None, str | None],
  name: str,
  layer_index: Array | None = None,
) -> Dense:
  """A Dense layer with ALBERT's init, the config's dtypes and logical axis names [in, out];
  `layer_index`: see `_normal` (per-layer weights only)."""
  return Dense(
    features,
    dtype=config.compute_dtype,
    param_dtype=config.parameter_dtype,
    kernel_init=_normal(config, axes, layer_index),
    bias_init=_zeros((axes[1],)),
    name=name,
  )


def layer_norm(config: AlbertConfig, name: str) -> nn.LayerNorm:
  """LayerNorm with the config's epsilon: [..., features] in, [..., features] float32 out."""
  # LayerNorm statistics in float32 whatever the compute dtype.
  return nn.LayerNorm(
    epsilon=config.layer_norm_eps,
    dtype=jnp.float32,
    param_dtype=config.parameter_dtype,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
    bias_init=_zeros(("norm",)),
    name=name,
  )


def constrain(x: Array, axes: tuple[str | None, ...]) -> Array:
  """Sharding hint for activations (a no-op outside a mesh / axis-rules context)."""
  return nn.with_logical_constraint(x, axes)


# --------------------------------------------------------------------------- embeddings


class AlbertEmbeddings(nn.Module):
  """Word + position + token-type embeddings of size E, LayerNorm over E, dropout.

  Returns [batch, seq, embedding_size] in float32 (the E->H projection lives in the encoder, as
  in transformers). The word table is also the MLM decoder (`attend`).
  """

  config: AlbertConfig

  def setup(self):
    cfg = self.config

    def table(rows: int, rows_axis: str) -> nn.Embed:  # [rows, embedding], float32 lookups
      return nn.Embed(
        rows,
        cfg.embedding_size,
        dtype=jnp.float32,
        param_dtype=cfg.parameter_dtype,
        embedding_init=_normal(cfg, (rows_axis, "embedding")),
      )

    self.word_embeddings = table(cfg.vocab_size, "vocab")
    self.position_embeddings = table(cfg.max_position_embeddings, "positions")
    self.token_type_embeddings = table(cfg.type_vocab_size, "token_types")
    self.LayerNorm = layer_norm(cfg, "LayerNorm")
    self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

  def __call__(
    self, input_ids: Array, token_type_ids: Array, position_ids: Array, deterministic: bool = True
  ) -> Array:
    """Embed ids.

    Args:
      input_ids, token_type_ids, position_ids: [batch, seq] integer ids (all three required here;
        `AlbertModule` fills the defaults).
      deterministic: False applies hidden dropout and needs rngs={"dropout": key}.

    Returns:
      [batch, seq, embedding_size] float32.
    """
    x = (
      self.word_embeddings(input_ids)
      + self.position_embeddings(position_ids)
      + self.token_type_embeddings(token_type_ids)
    )
    x = self.LayerNorm(x)
    return self.dropout(x, deterministic=deterministic)

  def attend(self, x: Array) -> Array:
    """Tied decoder: [..., E] -> [..., V] logits in float32 (matmul in the compute dtype)."""
    table = jnp.asarray(self.word_embeddings.embedding, self.config.compute_dtype)
    rows = x.reshape(-1, x.shape[-1]).astype(self.config.compute_dtype)
    logits = precision.einsum_f32("ne,ve->nv", rows, table)
    return logits.reshape(*x.shape[:-1], table.shape[0])


# --------------------------------------------------------------------------- the shared layer


class AlbertAttention(nn.Module):
  """Multi-head self-attention, output projection, dropout, residual and post-LayerNorm.

  `layer_index`: the scan step, given only while initializing per-layer (stacked) weights.
  """

  config: AlbertConfig
  layer_index: Array | None = None

  @nn.compact
  def __call__(
    self, hidden: Array, mask: Array, deterministic: bool, output_attentions: bool = False
  ) -> tuple[Array, Array | None]:
    """hidden: [batch, seq, H]; mask: [batch, 1, 1, seq] bool (True = attend) ->
    ([batch, seq, H], the probabilities [batch, heads, seq, seq] float32 when output_attentions
    else None)."""
    cfg = self.config
    batch, seq, _ = hidden.shape
    heads, head_dim = cfg.num_attention_heads, cfg.head_dim

    def project(name):
      y = dense(cfg, cfg.hidden_size, ("hidden", "joined_kv"), name, self.layer_index)(hidden)
      return y.reshape(batch, seq, heads, head_dim)

    query, key, value = project("query"), project("key"), project("value")
    dropout_active = cfg.attention_probs_dropout_prob > 0.0 and not deterministic
    impl = cfg.attention_implementation
    probs = None
    # In a low-precision compute dtype "auto" takes the explicit path as well (except on GPU,
    # where jax.nn.dot_product_attention can run cuDNN's fused kernel): its GEMMs run with
    # float32 accumulation in both directions, where XLA's lowering of dot_product_attention
    # leaves the PV product and the backward GEMMs to float32. Fused attention kernels never
    # materialize the probabilities: asking for them takes the explicit path too.
    explicit = (
      impl == "einsum"
      or output_attentions
      or (
        impl == "auto"
        and (
          dropout_active or (cfg.compute_dtype != jnp.float32 and jax.default_backend() != "gpu")
        )
      )
    )
    if explicit:
      # Scores and softmax in float32; probabilities back to the compute dtype for the PV matmul.
      scores = precision.einsum_f32("bqnd,bknd->bnqk", query, key)
      scores = scores / np.sqrt(head_dim).astype(np.float32)
      scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
      probs = precision.softmax_to(scores, value.dtype)
      probs = nn.Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=deterministic)
      context = precision.einsum_f32("bnqk,bknd->bqnd", probs, value).astype(value.dtype)
    else:
      if dropout_active:
        raise ValueError(
          f"attention_implementation={impl!r} has no attention-probability "
          "dropout; use 'auto' or 'einsum' when attention_probs_dropout_prob > 0"
        )
      context = jax.nn.dot_product_attention(
        query, key, value, mask=mask, implementation=None if impl in ("auto", "xla") else impl
      )
    context = context.reshape(batch, seq, cfg.hidden_size)
    projected = dense(cfg, cfg.hidden_size, ("joined_kv", "hidden"), "dense", self.layer_index)(
      context
    )
    projected = nn.Dropout(cfg.hidden_dropout_prob)(projected, deterministic=deterministic)
    # Float32 out: the FFN's residual. Rounding it to bf16 as well moved the bf16 model's logits
    # further from float32's (relative error 0.0065 against 0.0060 before issue 15; 0.0056 so).
    out = add_and_norm(self, cfg, "LayerNorm", hidden, projected, out_dtype=jnp.float32)
    return out, (probs if output_attentions else None)


def _norm_of_sum(
  module: nn.Module, config: AlbertConfig, name: str, out_dtype: Any, residual, delta
) -> Array:
  total = residual.astype(jnp.float32) + delta.astype(jnp.float32)
  return layer_norm(config, name)(total).astype(out_dtype)


def add_and_norm(
  module: nn.Module,
  config: AlbertConfig,
  name: str,
  residual: Array,
  delta: Array,
  out_dtype: Any = None,
) -> Array:
  """LayerNorm `name` (a child of `module`) of residual + delta, both [batch, seq, H].

  Sum and statistics in float32, the result in `out_dtype` (default: the compute dtype). In a
  low-precision compute dtype the norm is recomputed in the backward pass, so what the layer
  keeps for it is its two inputs as they are, not float32 intermediates of the activation.
  """
  out_dtype = jnp.dtype(out_dtype or config.compute_dtype)
  if config.compute_dtype == jnp.float32:
    return _norm_of_sum(module, config, name, out_dtype, residual, delta)
  recomputed = nn.remat(_norm_of_sum, prevent_cse=False, static_argnums=(1, 2, 3))
  return recomputed(module, config, name, out_dtype, residual, delta)


class AlbertLayer(nn.Module):
  """One post-LN transformer block: attention, then FFN with residual and LayerNorm."""

  config: AlbertConfig

  @nn.compact
  def __call__(
    self,
    hidden: Array,
    mask: Array,
    deterministic: bool,
    output_attentions: bool = False,
    layer_index: Array | None = None,
  ) -> tuple[Array, Array | None]:
    """[batch, seq, H] (compute dtype) -> ([batch, seq, H] (compute dtype), attention
    probabilities [batch, heads, seq, seq] or None). `layer_index`: the scan step, given while
    initializing per-layer weights (see `_normal`)."""
    cfg = self.config
    per_layer = layer_sharing.per_layer_blocks(cfg)
    attention_index = layer_index if "attention" in per_layer else None
    ffn_index = layer_index if "ffn" in per_layer else None
    attention_out, probs = AlbertAttention(cfg, attention_index, name="attention")(
      hidden, mask, deterministic, output_attentions
    )
    x = dense(cfg, cfg.intermediate_size, ("hidden", "mlp"), "ffn", ffn_index)(attention_out)
    x = constrain(
      _activation_in_float32(cfg, x), ("activation_batch", "activation_length", "activation_mlp")
    )
    x = dense(cfg, cfg.hidden_size, ("mlp", "hidden"), "ffn_output", ffn_index)(x)
    x = nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)
    return add_and_norm(self, cfg, "full_layer_layer_norm", attention_out, x), probs


def _activation_in_float32(config: AlbertConfig, x: Array) -> Array:
  """The FFN activation of compute-dtype `x` [..., I], computed in float32, returned in the
  compute dtype. In a low-precision dtype it is recomputed in the backward pass, so only `x`
  (compute dtype) is kept for it, not float32 intermediates of [batch, seq, I]."""
  act = activation_fn(config.hidden_act)
  if x.dtype == jnp.float32:
    return act(x)
  return jax.checkpoint(lambda v: act(v.astype(jnp.float32)).astype(v.dtype), prevent_cse=False)(x)


class AlbertLayerGroup(nn.Module):
  """`inner_group_num` distinct layers applied in order: one step of the encoder.

  Its signature is a scan body: (carry, *broadcast) -> (carry, per-step output), i.e.
  (hidden [batch, seq, H], mask [batch, 1, 1, seq], deterministic) ->
  (hidden [batch, seq, H], (hidden again when `emit_hidden_states` else None, the
  inner_group_num layers' attention probabilities [inner, batch, heads, seq, seq] when
  `emit_attentions` else None)).
  """

  config: AlbertConfig
  emit_hidden_states: bool = False
  emit_attentions: bool = False

  @nn.compact
  def __call__(
    self, hidden: Array, mask: Array, deterministic: bool, layer_index: Array | None = None
  ):
    attentions = []
    for i in range(self.config.inner_group_num):
      hidden, probs = AlbertLayer(self.config, name=f"albert_layers_{i}")(
        hidden, mask, deterministic, self.emit_attentions, layer_index
      )
      attentions.append(probs)
    hidden = constrain(hidden, ("activation_batch", "activation_length", "activation_hidden"))
    return hidden, (
      hidden if self.emit_hidden_states else None,
      jnp.stack(attentions) if self.emit_attentions else None,
    )


def remat_policy(name: str):
  """Config name -> jax.checkpoint policy (None = save nothing, recompute all)."""
  policies = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
  }
  if name not in policies:
    raise ValueError(f"Unknown remat policy {name!r}; choose 'none' or one of {sorted(policies)}")
  return policies[name]


class AlbertTransformer(nn.Module):
  """E->H projection, then L steps; step l runs group int(l * G / L).

  With `scan_layers` each group is one `nn.scan` over its run of steps with broadcast (not
  stacked) parameters and per-step dropout RNGs; `remat` wraps the scanned body. Under a
  `cross_layer_sharing` other than "all" the unshared block's parameters are stacked by the same
  scan instead ([L, ...], `albert_flax.layer_sharing`).
  """

  config: AlbertConfig

  @nn.compact
  def __call__(
    self,
    embeddings: Array,
    mask: Array,
    deterministic: bool,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
  ) -> tuple[Array, tuple[Array, ...] | None, tuple[Array, ...] | None]:
    """embeddings: [batch, seq, E]; mask: [batch, 1, 1, seq] -> ([batch, seq, H], hidden states,
    attention probabilities (L * inner_group_num arrays [batch, heads, seq, seq]))."""
    cfg = self.config
    hidden = dense(cfg, cfg.hidden_size, ("embedding", "hidden"), "embedding_hidden_mapping_in")(
      embeddings
    )
    hidden = constrain(hidden, ("activation_batch", "activation_length", "activation_hidden"))
    all_hidden = [hidden] if output_hidden_states else None
    all_attentions = [] if output_attentions else None

    per_layer = layer_sharing.per_layer_blocks(cfg)
    group_cls = AlbertLayerGroup
    if per_layer:  # each step sees its slice of the per-layer weights beside the shared ones
      group_cls = layer_sharing.merged_view(group_cls, cfg)
    if cfg.remat != "none":
      # static_argnums counts `self`: (self, hidden, mask, deterministic) -> deterministic is 3.
      group_cls = nn.remat(
        group_cls,
        prevent_cse=not cfg.scan_layers,
        static_argnums=(3,),
        policy=remat_policy(cfg.remat),
      )
    cast = cfg.compute_dtype != cfg.parameter_dtype and not self.is_initializing()
    for group, steps in cfg.group_runs():
      name = f"albert_layer_groups_{group}"
      if cfg.scan_layers:
        # Initializing per-layer weights, each step also gets its index (`_normal`).
        step_index = (jnp.arange(steps),) if per_layer and self.is_initializing() else ()
        scanned = nn.scan(
          group_cls,
          variable_broadcast=("params", precision.COMPUTE_COPIES),
          # The per-layer weights (if any) are stacked, a leading [steps] axis named "layers".
          variable_axes={stacked: 0 for stacked in layer_sharing.PER_LAYER.values()}
          if per_layer
          else {},
          split_rngs={"params": False, "dropout": True},
          in_axes=(nn.broadcast, nn.broadcast) + (0,) * len(step_index),
          length=steps,
          metadata_params={nn.PARTITION_NAME: layer_sharing.LAYERS_AXIS},
        )
        if per_layer:
          scanned = layer_sharing.split_view(scanned, cfg, cast)
        elif cast:
          # Loop-invariant work out of the loop: the group's kernels are cast to the compute
          # dtype here, once per call, and broadcast into every step beside the parameters.
          scanned = nn.map_variables(
            scanned,
            ("params", precision.COMPUTE_COPIES),
            trans_in_fn=functools.partial(precision.with_compute_copies, dtype=cfg.compute_dtype),
          )
        hidden, (step_hidden, step_attentions) = scanned(
          cfg, output_hidden_states, output_attentions, name=name
        )(hidden, mask, deterministic, *step_index)
        if output_hidden_states:
          all_hidden.extend(step_hidden[i] for i in range(steps))
        if output_attentions:  # [steps, inner, batch, heads, seq, seq], in application order
          all_attentions.extend(
            step_attentions[i, j] for i in range(steps) for j in range(cfg.inner_group_num)
          )
      else:
        # Python unrolling, kept only to compare compile time against in benchmarks.
        layer_group = group_cls(cfg, output_hidden_states, output_attentions, name=name)
        for _ in range(steps):
          hidden, (_, step_attentions) = layer_group(hidden, mask, deterministic)
          if output_hidden_states:
            all_hidden.append(hidden)
          if output_attentions:
            all_attentions.extend(step_attentions)
    return (
      hidden,
      tuple(all_hidden) if output_hidden_states else None,
      tuple(all_attentions) if output_attentions else None,
    )


# --------------------------------------------------------------------------- the backbone


class AlbertModule(nn.Module):
  """Embeddings + shared-layer encoder (+ pooler). The `albert` submodule of every model.

  Attributes:
    config: the model's AlbertConfig.
    add_pooling_layer: build `pooler` (dense H->H + tanh on the first token); without it
      `pooler_output` is None and the parameter tree has no `pooler`.
  """

  config: AlbertConfig
  add_pooling_layer: bool = True

  def setup(self):
    cfg = self.config
    self.embeddings = AlbertEmbeddings(cfg)
    self.encoder = AlbertTransformer(cfg)
    if self.add_pooling_layer:
      self.pooler = dense(cfg, cfg.hidden_size, ("hidden", "pooler_out"), "pooler")

  def __call__(
    self,
    input_ids: Array,
    attention_mask: Array | None = None,
    token_type_ids: Array | None = None,
    position_ids: Array | None = None,
    deterministic: bool = True,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
  ) -> AlbertModelOutput:
    """Run the backbone.

    Args:
      input_ids: [batch, seq] integer token ids in [0, vocab_size); seq <= max_position_embeddings.
      attention_mask: [batch, seq], 1 (or any value > 0) = token, 0 = padding; None = all ones.
      token_type_ids: [batch, seq] integer segment ids in [0, type_vocab_size); None = zeros.
      position_ids: [batch, seq] integer positions; None = 0 .. seq-1 on every row.
      deterministic: True (the default) disables dropout; False applies it and needs
        `rngs={"dropout": key}` in `apply` (each scanned layer step gets its own split key).
      output_hidden_states: also return the per-step hidden states.
      output_attentions: also return every layer's attention probabilities (computed with the
        einsum attention whatever `attention_implementation` says).

    Returns:
      AlbertModelOutput: last_hidden_state [batch, seq, hidden] (compute dtype), pooler_output
      [batch, hidden] float32 or None, hidden_states (L + 1 arrays [batch, seq, hidden]) or None.

    Raises:
      ValueError: from `validate_inputs` on bad shapes or out-of-range ids (values are checked
        only when the arrays are concrete, i.e. outside jit).
    """
    validate_inputs(self.config, input_ids, attention_mask, token_type_ids, position_ids)
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    if position_ids is None:
      position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
    embedded = self.embeddings(input_ids, token_type_ids, position_ids, deterministic)
    mask = (jnp.asarray(attention_mask) > 0)[:, None, None, :]
    hidden, all_hidden, all_attentions = self.encoder(
      embedded, mask, deterministic, output_hidden_states, output_attentions
    )
    pooled = None
    if self.add_pooling_layer:
      pooled = jnp.tanh(self.pooler(hidden[:, 0]).astype(jnp.float32))
    return AlbertModelOutput(
      last_hidden_state=hidden,
      pooler_output=pooled,
      hidden_states=all_hidden,
      attentions=all_attentions,
    )
