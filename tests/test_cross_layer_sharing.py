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
from conftest import BATCH, SEQ, TINY, dropout_loss, make_inputs
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
  weights = jax.random.normal(jax.random.key(1), (BATCH, SEQ, config.vocab_size))
  loss = lambda p: dropout_loss(model, p, weights)  # noqa: E731
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


def test_none_applies_layer_l_at_step_l():
  """Distinct per-layer weights: "none" computes what G = L groups of one layer each compute (the
  original's unshared layout, checked against transformers elsewhere), slice l being group l;
  each slice's gradient is its group's."""
  groups = CONFIG.replace(num_hidden_groups=3, hidden_dropout_prob=0.0)
  none = groups.replace(num_hidden_groups=1, cross_layer_sharing="none")
  ids, mask, types = make_inputs()
  model = af.AlbertForPreTraining(groups)
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(5), ids)["params"])
  encoder = params["albert"]["encoder"]
  stacked_layer = jax.tree.map(
    lambda *layers: jnp.stack(layers), *(encoder[f"albert_layer_groups_{g}"] for g in range(3))
  )
  stacked = {
    **params,
    "albert": {
      **params["albert"],
      "encoder": {
        "embedding_hidden_mapping_in": encoder["embedding_hidden_mapping_in"],
        "albert_layer_groups_0": stacked_layer,
      },
    },
  }

  def run(config, p):
    def loss(p):
      out = af.AlbertForPreTraining(config).apply(
        {"params": p}, ids, attention_mask=mask, token_type_ids=types
      )
      return jnp.sum(out.prediction_logits**2) + jnp.sum(out.sop_logits**2), out

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(p)

  (_, want), want_grads = run(groups, params)
  (_, got), grads = run(none, stacked)
  np.testing.assert_allclose(got.prediction_logits, want.prediction_logits, rtol=1e-5, atol=1e-5)
  want_layer = want_grads["albert"]["encoder"]
  got_layer = _flat(grads["albert"]["encoder"]["albert_layer_groups_0"])
  for g in range(3):
    for path, value in _flat(want_layer[f"albert_layer_groups_{g}"]).items():
      scale = float(np.abs(value).max())
      np.testing.assert_allclose(got_layer[path][g], value, rtol=1e-4, atol=1e-5 * scale)


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


# ------------------------------------------------------------------------------ compiled step


@pytest.mark.parametrize(
  "sharing, remat", [("attention", "none"), ("ffn", "dots"), ("none", "full")]
)
def test_bf16_step_has_one_loop_body_each_way_and_casts_shared_weights_outside_it(sharing, remat):
  """The compiled bf16 training step: one encoder loop forward and one backward (as "all"), their
  GEMMs in bf16, and no weight converted inside them but one layer's slice of a stacked weight
  (XLA moves the cast of the stack behind the loop's slicing: each layer cast once, the same work
  as casting the stack before the loop). Shared weights' compute-dtype copies are made before the
  loop; without them the loops convert whole stacks at every step."""
  from test_bf16_hlo import compiled_train_step_hlo, encoder_loop_bodies, parse_hlo, reachable

  config = af.AlbertConfig.preset(
    "tiny", dtype="bfloat16", num_hidden_layers=3, remat=remat, cross_layer_sharing=sharing
  )
  computations, types = parse_hlo(compiled_train_step_hlo(config))
  bodies = encoder_loop_bodies(computations)
  assert len(bodies) == 2, bodies  # forward and backward: the layer compiled once each way
  kernels = {(128, 128), (128, 512), (512, 128)}  # tiny's [H, H], [H, I], [I, H]
  gemms, casts = [], []
  for body in bodies:
    for inst in reachable(computations, body):
      operands = [types[o] for o in inst["operands"] if o in types]
      if inst["opcode"] == "dot":
        gemms.append(inst["name"])
        assert all(dtype == "bf16" for dtype, _ in operands), inst["text"]
      if inst["opcode"] == "convert" and operands:
        dims = operands[0][1]
        if dims[-2:] in kernels and dims[:-2] != (1,):  # a whole weight or stack, per step
          casts.append(f"{body}: {inst['text'].strip()[:120]}")
  assert len(gemms) >= 8 * 3, gemms  # the layer's GEMMs forward and backward are there
  assert not casts, "\n".join(casts)


# ------------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """{strategy: (directory, params, logits)} of AlbertForMaskedLM saved as orbax."""
  ids, mask, types = make_inputs()
  out = {}
  for sharing in ("attention", "none"):
    model = af.AlbertForMaskedLM(CONFIG.replace(cross_layer_sharing=sharing))
    params = jax.jit(model.init)(jax.random.key(3), ids)["params"]
    directory = tmp_path_factory.mktemp(sharing)
    af.save_pretrained(directory, model, params, format="orbax")
    logits = model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types).logits
    out[sharing] = directory, params, logits
  return out


@pytest.mark.parametrize("sharing", ["attention", "none"])
def test_orbax_round_trip(sharing, saved):
  directory, params, want = saved[sharing]
  ids, mask, types = make_inputs()
  model, loaded = af.from_pretrained(directory)
  assert type(model) is af.AlbertForMaskedLM
  assert model.config.cross_layer_sharing == sharing  # from config.json
  for path, value in _flat(nn.meta.unbox(params)).items():
    np.testing.assert_array_equal(_flat(loaded)[path], value)
  got = model.apply({"params": loaded}, ids, attention_mask=mask, token_type_ids=types).logits
  np.testing.assert_array_equal(got, want)


def test_loading_into_another_strategy_names_the_setting(saved):
  directory = saved["none"][0]
  with pytest.raises(ValueError, match=r"cross_layer_sharing differs\?"):
    af.from_pretrained(directory, cross_layer_sharing="all")


def test_nnx_round_trip(saved, tmp_path):
  from flax import nnx

  directory, params, want = saved["attention"]
  ids, mask, types = make_inputs()
  model = af.nnx.from_pretrained(directory, af.AlbertForMaskedLM)
  assert model.config.cross_layer_sharing == "attention"
  got = model(ids, attention_mask=mask, token_type_ids=types).logits
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  af.nnx.save_pretrained(tmp_path, model)
  again = af.nnx.from_pretrained(tmp_path, af.AlbertForMaskedLM)
  np.testing.assert_array_equal(
    again(ids, attention_mask=mask, token_type_ids=types).logits, np.asarray(got)
  )
  # A fresh NNX model of every strategy holds the stacked layout too.
  for sharing in PARTIAL:
    config = CONFIG.replace(cross_layer_sharing=sharing)
    fresh = nnx.eval_shape(lambda c=config: af.nnx.AlbertModel(c, rngs=nnx.Rngs(0)))
    state = _flat(nnx.state(fresh, nnx.Param).to_pure_dict())
    for path, leaf in state.items():
      assert (leaf.shape[0] == 3) == layer_sharing.is_per_layer(config, path), (sharing, path)


@pytest.mark.parametrize("format", ["hf", "tf"])
def test_hf_and_tf_export_refused_for_partial_sharing(format, saved, tmp_path):
  _, params, _ = saved["attention"]
  model = af.AlbertForMaskedLM(CONFIG.replace(cross_layer_sharing="attention"))
  with pytest.raises(ValueError) as error:
    af.save_pretrained(tmp_path / "out", model, params, format=format)
  message = str(error.value)
  assert f"format={format!r}" in message and "cross_layer_sharing='attention'" in message
  assert "\n" not in message and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ sharding


def test_stacked_axis_has_a_valid_spec_on_a_data_fsdp_tensor_mesh():
  from jax.sharding import PartitionSpec as P

  from albert_flax import sharding

  if len(jax.devices()) < 8:
    pytest.fail("needs 8 devices; run pytest from the repo so tests/conftest.py sets XLA_FLAGS")
  mesh = sharding.make_mesh(2, 2, 2)
  config = CONFIG.replace(cross_layer_sharing="none", num_hidden_layers=2, intermediate_size=64)
  model = af.AlbertModel(config)
  ids, mask, types = make_inputs()
  boxed = jax.eval_shape(model.init, jax.random.key(0), ids)["params"]
  specs = _flat(sharding.tree_shardings(boxed, mesh))
  layer = (*LAYER, "ffn", "kernel")
  assert specs[layer].spec == P(None, "fsdp", "tensor")  # layers whole, then as "all" lays it
  assert specs[(*LAYER, "attention", "dense", "kernel")].spec == P(None, "tensor", "fsdp")
  assert specs[(*LAYER, "full_layer_layer_norm", "scale")].spec == P(None, None)
  # The shardings place real arrays, and the sharded model computes what one device does.
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), ids)["params"])
  want = model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types)
  placed = jax.device_put(params, sharding.tree_shardings(boxed, mesh))
  assert placed["albert"]["encoder"]["albert_layer_groups_0"]["albert_layers_0"]["ffn"][
    "kernel"
  ].sharding.shard_shape((2, 32, 64)) == (2, 16, 32)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    got = jax.jit(
      lambda p: model.apply({"params": p}, ids, attention_mask=mask, token_type_ids=types)
    )(placed)
  np.testing.assert_allclose(got.last_hidden_state, want.last_hidden_state, rtol=1e-5, atol=1e-5)


def test_pretraining_step_compiles_for_a_tpu_slice_from_model_overrides():
  """`--config.model_overrides.cross_layer_sharing=none --compile_only`: the program's train
  step for a v3 slice under data x fsdp x tensor, compiled by the TPU compiler (libtpu)."""
  from albert_flax.train import aot
  from pretrain import steps as pretrain_steps
  from pretrain.configs import tiny

  c = tiny.get_config()
  c.batch_size, c.max_seq_length, c.max_predictions_per_seq = 16, 32, 4
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 2, 2, 2
  c.model_overrides.cross_layer_sharing = "none"
  slice_ = aot.parse_topology("v3:2x2")
  program = pretrain_steps.compile_program(c, slice_.devices())
  layers, hidden, inner = 2, 128, 512  # the tiny config's
  shapes = {leaf.shape for leaf in jax.tree.leaves(program.jobs[0].args)}
  assert (layers, hidden, inner) in shapes and (layers, inner, hidden) in shapes
  result = aot.compile_job(program.jobs[0], slice_.chip.hbm_bytes)
  assert result.fits and result.compiled is not None, result.error
  assert not [w for w in result.warnings if "rematerialization" in w], result.warnings


def test_lamb_gives_each_stacked_layer_its_own_trust_ratio():
  from albert_flax.train import optim

  rs = np.random.default_rng(0)
  layer = {"ffn": {"kernel": rs.normal(size=(3, 4, 5)), "bias": rs.normal(size=(3, 5))}}
  layer["attention"] = {"query": {"kernel": rs.normal(size=(4, 4))}}  # shared: one ratio
  params = {"albert": {"encoder": {"albert_layer_groups_0": {"albert_layers_0": layer}}}}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  # Each layer's update a different multiple of its weights: different ratios per layer.
  updates = jax.tree.map(
    lambda x: x * jnp.arange(1.0, x.shape[0] + 1).reshape(-1, *[1] * (x.ndim - 1)), params
  )
  tx = optim.scale_by_trust_ratio_per_layer()
  scaled, _ = tx.update(updates, tx.init(params), params)
  got = scaled["albert"]["encoder"]["albert_layer_groups_0"]["albert_layers_0"]
  w, u = layer["ffn"]["kernel"], updates["albert"]["encoder"]["albert_layer_groups_0"]
  u = np.asarray(u["albert_layers_0"]["ffn"]["kernel"])
  for i in range(3):  # as if layer i's kernel were a parameter of its own
    want = u[i] * np.linalg.norm(w[i]) / np.linalg.norm(u[i])
    np.testing.assert_allclose(got["ffn"]["kernel"][i], want, rtol=1e-5)
  q = layer["attention"]["query"]["kernel"]
  uq = np.asarray(
    updates["albert"]["encoder"]["albert_layer_groups_0"]["albert_layers_0"]["attention"]["query"][
      "kernel"
    ]
  )
  np.testing.assert_allclose(
    got["attention"]["query"]["kernel"], uq * np.linalg.norm(q) / np.linalg.norm(uq), rtol=1e-5
  )
