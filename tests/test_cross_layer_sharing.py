"""Cross-layer sharing strategies (`AlbertConfig.cross_layer_sharing`): parameter counts of the
paper's Tables 3 and 4, the stacked layout, one loop body, equivalence with the all-shared model
(outputs, and gradients summed over layers), checkpoints, export refusals, shardings and the
refused combinations."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SEQ, TINY, make_inputs
from flax import traverse_util

import albert_flax as af
from albert_flax import layer_sharing, paper

PARTIAL = ("attention", "ffn", "none")
# One group of one layer (the strategies' requirement), three steps, dropout on.
CONFIG = af.AlbertConfig(
  **{**TINY, "num_hidden_groups": 1, "inner_group_num": 1, "num_hidden_layers": 3},
  hidden_dropout_prob=0.1,
  attention_probs_dropout_prob=0.1,
)
LAYER = ("albert", "encoder", "albert_layer_groups_0", "albert_layers_0")


def _shapes(model, ids=None):
  ids = jnp.zeros((1, SEQ), jnp.int32) if ids is None else ids
  return jax.eval_shape(model.init, jax.random.key(0), ids)["params"]


def _flat(tree):
  return traverse_util.flatten_dict(tree)


# ------------------------------------------------------------------------------ counts, layout


def test_parameter_counts_match_tables_3_and_4():
  rows = paper.parameter_rows()
  assert len(rows) == 16 and {r.table for r in rows} == {3, 4}
  for r in rows:
    assert abs(r.ours / 1e6 - r.paper_millions) <= 2.0, r
  ours = {(r.embedding_size, r.cross_layer_sharing): r.ours for r in rows}
  # ALBERT-base as released (11.7M); the difference between strategies is exactly the unshared
  # blocks of 11 more layers: attention 4 (H*H + H) + 2H, FFN 2 H I + I + H + 2H.
  assert ours[(128, "all")] == 11_683_584
  attention, ffn = 4 * (768 * 768 + 768) + 2 * 768, 2 * 768 * 3072 + 3072 + 3 * 768
  for e in (128, 768):
    assert ours[(e, "attention")] - ours[(e, "all")] == 11 * ffn
    assert ours[(e, "ffn")] - ours[(e, "all")] == 11 * attention
    assert ours[(e, "none")] - ours[(e, "all")] == 11 * (attention + ffn)


@pytest.mark.parametrize("sharing", PARTIAL)
def test_unshared_parameters_have_a_leading_layer_axis(sharing):
  all_shared = _flat(nn.meta.unbox(_shapes(af.AlbertForPreTraining(CONFIG))))
  boxed = _flat(_shapes(af.AlbertForPreTraining(CONFIG.replace(cross_layer_sharing=sharing))))
  assert boxed.keys() == all_shared.keys()  # the same paths as ALBERT's
  stacked = set()
  for path, box in boxed.items():
    shape, names = box.unbox().shape, box.names
    if layer_sharing.is_per_layer(CONFIG.replace(cross_layer_sharing=sharing), path):
      assert shape == (3, *all_shared[path].shape) and names[0] == "layers", path
      stacked.add(path[len(LAYER)])
    else:
      assert shape == all_shared[path].shape and "layers" not in names, path
  per_layer = {"attention": {"ffn", "ffn_output", "full_layer_layer_norm"}, "ffn": {"attention"}}
  assert stacked == per_layer.get(
    sharing, {"attention", "ffn", "ffn_output", "full_layer_layer_norm"}
  )


def test_per_layer_weights_are_initialized_differently_per_layer():
  model = af.AlbertModel(CONFIG.replace(cross_layer_sharing="none"))
  params = _flat(nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), make_inputs()[0])["params"]))
  kernel = np.asarray(params[("albert", "encoder", *LAYER[2:], "ffn", "kernel")])
  assert kernel.shape[0] == 3 and not np.allclose(kernel[0], kernel[1])
  assert 0.8 < kernel.std() / CONFIG.initializer_range < 1.2


# ------------------------------------------------------------------------------ equivalence


def _stacked_copy(params, config):
  """The all-shared `params` as a `config` tree: each per-layer weight repeated L times."""
  L = config.num_hidden_layers
  return traverse_util.unflatten_dict(
    {
      path: jnp.broadcast_to(value, (L, *value.shape))
      if layer_sharing.is_per_layer(config, path)
      else value
      for path, value in _flat(params).items()
    }
  )


def _outputs_and_gradients(config, params):
  model = af.AlbertForPreTraining(config)
  ids, mask, types = make_inputs()
  weights = jax.random.normal(jax.random.key(1), (ids.shape[0], SEQ, config.vocab_size))

  def loss(p):
    out = model.apply(
      {"params": p},
      ids,
      attention_mask=mask,
      token_type_ids=types,
      deterministic=False,
      rngs={"dropout": jax.random.key(2)},
    )
    return jnp.sum(out.prediction_logits * weights) + jnp.sum(out.sop_logits**2), out

  (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return out, grads


@pytest.fixture(scope="module")
def all_shared():
  """(params, outputs, gradients) of the all-shared model, dropout on."""
  model = af.AlbertForPreTraining(CONFIG)
  ids = make_inputs()[0]
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), ids)["params"])
  out, grads = _outputs_and_gradients(CONFIG, params)
  return params, out, grads


@pytest.mark.parametrize("sharing", PARTIAL)
def test_copies_of_the_shared_layer_give_the_all_shared_model(sharing, all_shared):
  """Per-layer weights that are L copies of the shared layer: the same outputs (same dropout
  masks too), and each copy's gradient summed over the layers is the shared weight's."""
  params, want_out, want_grads = all_shared
  config = CONFIG.replace(cross_layer_sharing=sharing)
  out, grads = _outputs_and_gradients(config, _stacked_copy(params, config))
  for name in ("prediction_logits", "sop_logits"):
    np.testing.assert_allclose(getattr(out, name), getattr(want_out, name), rtol=1e-5, atol=1e-5)
  want, got = _flat(want_grads), _flat(grads)
  assert got.keys() == want.keys()
  stacked = 0
  for path, g in got.items():
    if layer_sharing.is_per_layer(config, path):
      assert g.shape[0] == 3
      g, stacked = g.sum(0), stacked + 1
    scale = float(np.abs(want[path]).max())
    np.testing.assert_allclose(g, want[path], rtol=1e-4, atol=1e-5 * scale, err_msg=str(path))
  assert stacked > 0


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
  "overrides, named",
  [
    (dict(cross_layer_sharing="ffn", num_hidden_groups=2), "num_hidden_groups"),
    (dict(cross_layer_sharing="none", inner_group_num=2), "inner_group_num"),
    (dict(cross_layer_sharing="attention", scan_layers=False), "scan_layers"),
  ],
)
def test_combinations_with_groups_are_refused(overrides, named):
  with pytest.raises(ValueError) as error:
    af.AlbertConfig.preset("tiny", **overrides)
  message = str(error.value)
  assert f"cross_layer_sharing={overrides['cross_layer_sharing']!r}" in message
  assert f"{named}=" in message and "\n" not in message


def test_unknown_strategy_lists_the_valid_ones():
  with pytest.raises(ValueError, match=re.escape("'layers' is not one of")) as error:
    af.AlbertConfig.preset("tiny", cross_layer_sharing="layers")
  assert all(f"'{s}'" in str(error.value) for s in ("all", "attention", "ffn", "none"))


def test_config_json_keeps_the_strategy(tmp_path):
  config = af.AlbertConfig.preset("tiny", cross_layer_sharing="attention")
  config.to_json_file(tmp_path / "config.json")
  assert af.AlbertConfig.from_json_file(tmp_path / "config.json") == config
  assert af.AlbertConfig().cross_layer_sharing == "all"  # the default: ALBERT
