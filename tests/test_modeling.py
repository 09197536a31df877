"""Numerics of the ALBERT models.

Parity with transformers' PyTorch ALBERT for every model class (weights loaded with
`from_pretrained` from a directory transformers saved, and exported back with
`save_pretrained(format="hf")`), parameter counts, bf16 compute, remat, per-step dropout masks and
input validation.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
  SEQ,
  TINY,
  assert_outputs_match,
  dropout_loss,
  forward,
  make_inputs,
  torch_outputs,
  torch_reference,
)
from flax import traverse_util

import albert_flax as af

HEAD_SIZES = {"AlbertForSequenceClassification": 3, "AlbertForTokenClassification": 5}


def _roundtrip_through_transformers(class_name, model, params, directory, inputs, expected):
  """save_pretrained(format="hf") -> transformers' from_pretrained -> the same outputs."""
  import transformers

  af.save_pretrained(directory, model, params, format="hf")
  reloaded, info = getattr(transformers, class_name).from_pretrained(
    directory, output_loading_info=True, attn_implementation="eager"
  )
  assert not any(info.values()), info  # nothing missing, unexpected or mismatched
  got = torch_outputs(reloaded.eval(), *inputs)
  assert got.keys() == expected.keys()
  assert_outputs_match(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("class_name", list(af.MODEL_CLASSES))
def test_parity_with_transformers_every_model_class(class_name, tmp_path):
  num_labels = HEAD_SIZES.get(class_name, 2)
  reference = torch_reference(class_name, num_labels=num_labels)
  reference.save_pretrained(tmp_path / "hf")
  inputs = make_inputs(choices=2 if class_name == "AlbertForMultipleChoice" else None)
  expected = torch_outputs(reference, *inputs)

  model, params = af.from_pretrained(tmp_path / "hf", getattr(af, class_name))
  assert model.config.num_labels == num_labels
  ours = forward(model, params, *inputs)
  # At least one head output and the L + 1 hidden states.
  assert assert_outputs_match(ours, expected) >= 2
  assert len(ours.hidden_states) == TINY["num_hidden_layers"] + 1

  _roundtrip_through_transformers(class_name, model, params, tmp_path / "ours", inputs, expected)


@pytest.mark.parametrize(
  "overrides",
  [
    # E == H; L=3 over G=2 groups: uneven runs (steps 0-1 -> group 0, step 2 -> group 1).
    dict(
      hidden_act="relu",
      embedding_size=32,
      num_hidden_layers=3,
      num_hidden_groups=2,
      inner_group_num=1,
    ),
    dict(hidden_act="gelu", num_hidden_layers=2, num_hidden_groups=1, inner_group_num=1),
    dict(hidden_act="silu", num_hidden_layers=3, num_hidden_groups=1, inner_group_num=2),
  ],
  ids=["relu-E=H-uneven-groups", "gelu-exact", "silu-inner2"],
)
def test_parity_activations_and_structures(overrides, tmp_path):
  reference = torch_reference("AlbertForPreTraining", seed=1, **overrides)
  reference.save_pretrained(tmp_path)
  inputs = make_inputs(seed=1)
  model, params = af.from_pretrained(tmp_path, af.AlbertForPreTraining)
  assert model.config.hidden_act == overrides["hidden_act"]
  ours = forward(model, params, *inputs)
  assert assert_outputs_match(ours, torch_outputs(reference, *inputs)) == 3


def test_masked_positions_gather_equals_full_logits(pretraining_checkpoint):
  directory, _, (ids, mask, types), _ = pretraining_checkpoint
  model, params = af.from_pretrained(directory)
  positions = np.array([[0, 3, 8], [1, 2, 5], [0, 0, 3]])
  full = forward(model, params, ids, mask, types)
  partial = forward(model, params, ids, mask, types, masked_positions=positions)
  assert partial.prediction_logits.shape == (3, 3, TINY["vocab_size"])
  expected = np.take_along_axis(np.asarray(full.prediction_logits), positions[..., None], axis=1)
  np.testing.assert_allclose(partial.prediction_logits, expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(partial.sop_logits, full.sop_logits, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layers", [12, 48])
def test_base_v2_parameter_count_is_independent_of_depth(layers):
  config = af.AlbertConfig.preset("base-v2", num_hidden_layers=layers)
  shapes = jax.eval_shape(
    af.AlbertModel(config).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32)
  )
  flat = traverse_util.flatten_dict(nn.meta.unbox(shapes["params"]))
  assert sum(int(np.prod(v.shape)) for v in flat.values()) == 11_683_584
  # The scanned tree holds exactly one layer: 16 tensors, no stacked depth axis.
  layer = {k: v for k, v in flat.items() if "albert_layer_groups_0" in k}
  assert {k[3] for k in layer} == {"albert_layers_0"} and len(layer) == 16
  assert all(v.shape[0] != layers or k[-1] != "kernel" for k, v in layer.items())
  assert layer[
    ("albert", "encoder", "albert_layer_groups_0", "albert_layers_0", "ffn", "kernel")
  ].shape == (768, 3072)


def _tiny_config(**overrides) -> af.AlbertConfig:
  return af.AlbertConfig(**{**TINY, **overrides})


def _random_params(model, ids, scale: float = 0.2, seed: int = 0):
  """Random parameters of `model` without compiling its init: N(0, scale), LayerNorm scales
  around 1 (nothing zero, nothing unit)."""
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), ids)["params"])
  leaves, tree = jax.tree.flatten_with_path(shapes)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  values = [
    scale * jax.random.normal(k, leaf.shape) + (1.0 if path[-1].key == "scale" else 0.0)
    for k, (path, leaf) in zip(keys, leaves)
  ]
  return jax.tree.unflatten(tree, values)


def test_bfloat16_compute_stays_close_to_float32(pretraining_checkpoint):
  directory, _, inputs, _ = pretraining_checkpoint
  model32, params = af.from_pretrained(directory)
  model16, params16 = af.from_pretrained(directory, dtype="bfloat16")
  assert jax.tree.map(lambda x: x.dtype, params16) == jax.tree.map(lambda x: x.dtype, params)
  # Kernels and tables at ALBERT's initializer scale (0.02), the scale of real checkpoints (the
  # test checkpoint's 0.2 makes attention needlessly sharp). Parameters stay float32.
  params = jax.tree_util.tree_map_with_path(
    lambda path, x: x * 0.1 if path[-1].key in ("kernel", "embedding") else x, params
  )
  out32, out16 = forward(model32, params, *inputs), forward(model16, params, *inputs)
  assert out16.hidden_states[-1].dtype == jnp.bfloat16  # the layers really ran in bf16
  for name in ("prediction_logits", "sop_logits"):
    a = np.asarray(getattr(out16, name), np.float32)
    b = np.asarray(getattr(out32, name))
    assert a.dtype == b.dtype == np.float32
    relative = np.linalg.norm(a - b) / np.linalg.norm(b)  # relative L2 error over the batch
    assert 0 < relative < 2e-2, (name, relative)
    assert np.abs(a - b).max() < 2e-2, name  # and at most 0.02 nats on any logit


def test_remat_gives_the_same_gradients():
  # Dropout on: remat must recompute the forward with the same masks.
  config = _tiny_config(
    num_hidden_layers=3, num_hidden_groups=1, inner_group_num=1, hidden_dropout_prob=0.1
  )
  ids = make_inputs()[0]
  params = _random_params(af.AlbertForPreTraining(config), ids)
  weights = jax.random.normal(jax.random.key(1), (3, SEQ, TINY["vocab_size"]))

  def gradients(remat):
    model = af.AlbertForPreTraining(config.replace(remat=remat))
    loss = lambda p: dropout_loss(model, p, weights)[0]  # noqa: E731
    flat = traverse_util.flatten_dict(jax.jit(jax.grad(loss))(params))
    return {"/".join(k): np.asarray(v) for k, v in flat.items()}

  reference = gradients("none")
  scale = max(float(np.abs(g).max()) for g in reference.values())
  for remat in ("full", "dots"):
    got = gradients(remat)
    assert got.keys() == reference.keys()
    for name, want in reference.items():
      if name.endswith("attention/key/bias"):
        # Softmax ignores a per-query constant: this gradient is 0 up to rounding noise.
        assert np.abs(got[name]).max() < 1e-5 * scale and np.abs(want).max() < 1e-5 * scale
        continue
      # Recomputation fuses differently: float32 rounding relative to the tensor's own scale.
      np.testing.assert_allclose(
        got[name], want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()), err_msg=name
      )
      assert np.abs(want).max() > 1e-4 * scale, name  # a gradient that is really there


def test_dropout_masks_differ_between_scan_steps():
  """Each application of the shared layer draws its own dropout mask (split_rngs over the scan).

  Every nn.Dropout call inside the layer reports its mask to the host with jax.debug.callback;
  with L=2 each layer-internal dropout site runs twice and the two masks must differ.
  """
  config = _tiny_config(
    num_hidden_layers=2, num_hidden_groups=1, inner_group_num=1, hidden_dropout_prob=0.5
  )
  ids, mask, types = make_inputs()
  model = af.AlbertModel(config)
  params = _random_params(model, ids)
  masks: dict[str, list[np.ndarray]] = {}

  def record(path, dropped):
    masks.setdefault(path, []).append(np.asarray(dropped))

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, nn.Dropout) and context.method_name == "__call__":
      path = "/".join(context.module.path)
      jax.debug.callback(lambda d, p=path: record(p, d), (out == 0) & (args[0] != 0))
    return out

  @jax.jit
  def run(params):
    with nn.intercept_methods(interceptor):  # active while tracing, where the calls happen
      return model.apply(
        {"params": params},
        ids,
        attention_mask=mask,
        token_type_ids=types,
        deterministic=False,
        rngs={"dropout": jax.random.key(3)},
      )

  jax.block_until_ready(run(params))
  jax.effects_barrier()  # all callbacks delivered
  layer_sites = {p: m for p, m in masks.items() if "albert_layer_groups_0" in p}
  assert len(layer_sites) == 2, masks.keys()  # after attention, after the FFN
  for path, (first, second) in layer_sites.items():
    assert 0.3 < first.mean() < 0.7 and 0.3 < second.mean() < 0.7, path
    assert not np.array_equal(first, second), f"{path}: the same mask on both steps"


@pytest.mark.parametrize(
  "case", ["id>=vocab", "negative id", "too long", "token type", "mask shape", "masked_positions"]
)
def test_bad_inputs_raise(case, pretraining_checkpoint):
  directory, *_ = pretraining_checkpoint
  model, params = af.from_pretrained(directory)
  ids, mask, types = make_inputs()
  kwargs = dict(attention_mask=mask, token_type_ids=types)
  if case == "id>=vocab":
    ids[0, 1], match = TINY["vocab_size"], "input_ids.*outside"
  elif case == "negative id":
    ids[1, 2], match = -1, "input_ids.*outside"
  elif case == "too long":
    length = TINY["max_position_embeddings"] + 1
    ids, match = np.ones((1, length), np.int64), "max_position_embeddings"
    kwargs = {}
  elif case == "token type":
    types[0, 0], match = 2, "token_type_ids.*outside"
  elif case == "mask shape":
    kwargs["attention_mask"], match = mask[:, :-1], "attention_mask has shape"
  else:
    kwargs["masked_positions"], match = np.array([[0, 1], [2, SEQ], [0, 0]]), "masked_positions"
  with pytest.raises(ValueError, match=match):
    model.apply({"params": params}, ids, **kwargs)


@pytest.mark.parametrize(
  "field",
  [
    "vocab_size",
    "embedding_size",
    "hidden_size",
    "num_hidden_layers",
    "num_hidden_groups",
    "num_attention_heads",
    "intermediate_size",
    "inner_group_num",
    "max_position_embeddings",
    "type_vocab_size",
    "num_labels",
  ],
)
def test_config_refuses_a_size_that_is_not_positive(field):
  with pytest.raises(ValueError, match=f"{field} must be a positive integer, got 0"):
    af.AlbertConfig(**{**TINY, field: 0})
  assert af.AlbertConfig(**{**TINY, "pad_token_id": 0}).pad_token_id == 0  # ids may be 0
