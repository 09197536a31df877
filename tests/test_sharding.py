"""Mesh construction, parameter shardings, and the train step giving the same numbers on 1 device
and on 8 (fake CPU) devices under data, fsdp and tensor meshes, with and without accumulation.

tests/conftest.py sets XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import albert_flax as af
from albert_flax import sharding
from albert_flax.train import losses, optim, training

# Small, but every sharded dim is exercised: V=99 and the 2 SOP classes do not divide by the
# tensor axis (so it is dropped there), H=32, 4 heads and I=64 do.
CONFIG = af.AlbertConfig(
  vocab_size=99,
  embedding_size=16,
  hidden_size=32,
  num_hidden_layers=2,
  num_attention_heads=4,
  intermediate_size=64,
  max_position_embeddings=32,
  classifier_dropout_prob=0.0,
)
BATCH, SEQ, PRED = 16, 16, 4


def _need_devices(n):
  if len(jax.devices()) < n:
    pytest.fail(f"needs {n} devices; run pytest from the repo so tests/conftest.py sets XLA_FLAGS")


def test_resolve_mesh_shape():
  assert sharding.resolve_mesh_shape(-1, 1, 1, 8) == (8, 1, 1)
  assert sharding.resolve_mesh_shape(2, -1, 2, 8) == (2, 2, 2)
  assert sharding.resolve_mesh_shape(1, 1, 1, 1) == (1, 1, 1)
  with pytest.raises(ValueError, match="at most one"):
    sharding.resolve_mesh_shape(-1, -1, 1, 8)
  with pytest.raises(ValueError, match="not a multiple"):
    sharding.resolve_mesh_shape(-1, 3, 1, 8)
  with pytest.raises(ValueError, match="needs 4 devices"):
    sharding.resolve_mesh_shape(2, 2, 1, 8)
  with pytest.raises(ValueError, match="positive"):
    sharding.resolve_mesh_shape(0, 1, 1, 8)


def test_make_mesh_uses_all_devices():
  _need_devices(8)
  mesh = sharding.make_mesh(2, -1, 2)
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices())


def test_fit_spec_drops_axes_that_do_not_divide():
  _need_devices(8)
  mesh = sharding.make_mesh(2, 2, 2)
  assert sharding.fit_spec_to_shape(P("fsdp", "tensor"), (32, 3), mesh) == P("fsdp", None)
  # 2 SOP classes over tensor=4
  wide = sharding.make_mesh(1, 2, 4)
  assert sharding.fit_spec_to_shape(P("fsdp", "tensor"), (32, 2), wide) == P("fsdp", None)
  assert sharding.fit_spec_to_shape(P(("data", "fsdp")), (6,), mesh) == P("data")
  assert sharding.fit_spec_to_shape(P(("data", "fsdp")), (8,), mesh) == P(("data", "fsdp"))
  assert sharding.fit_spec_to_shape(P(None), (3,), mesh) == P(None)


def _init_fn(model):
  def init(rng):
    return model.init(
      rng, jnp.zeros((1, SEQ), jnp.int32), masked_positions=jnp.zeros((1, PRED), jnp.int32)
    )["params"]

  return init


def test_parameter_and_optimizer_shardings_follow_the_rules():
  _need_devices(8)
  mesh = sharding.make_mesh(2, 2, 2)
  model = af.AlbertForPreTraining(CONFIG)
  tx, _ = optim.create_optimizer("lamb", 1e-3, 10, 1)
  _, shardings = training.abstract_train_state(_init_fn(model), tx, mesh, jax.random.key(0))
  p = shardings.params
  layer = p["albert"]["encoder"]["albert_layer_groups_0"]["albert_layers_0"]
  # V=99 does not divide by tensor=2: the vocab dim stays whole; E is never split (a split E
  # clashes with the batch split over fsdp in the token gather).
  assert p["albert"]["embeddings"]["word_embeddings"]["embedding"].spec == P(None, None)
  assert layer["attention"]["query"]["kernel"].spec == P("fsdp", "tensor")
  assert layer["attention"]["dense"]["kernel"].spec == P("tensor", "fsdp")
  assert layer["ffn"]["kernel"].spec == P("fsdp", "tensor")
  assert layer["ffn_output"]["kernel"].spec == P("tensor", "fsdp")
  assert layer["full_layer_layer_norm"]["scale"].spec == P(None)
  # [E, H]: "hidden" claims fsdp first, so E stays whole.
  assert p["albert"]["encoder"]["embedding_hidden_mapping_in"]["kernel"].spec == P(None, "fsdp")
  assert p["sop_classifier"]["classifier"]["kernel"].spec == P("fsdp", None)
  # LAMB's moments are sharded like their parameters.
  mu = shardings.opt_state[1][0].mu
  assert jax.tree.leaves(jax.tree.map(lambda a, b: a.spec == b.spec, mu, p)) == [True] * len(
    jax.tree.leaves(p)
  )


def _batch(rs):
  return dict(
    input_ids=rs.randint(5, CONFIG.vocab_size, size=(BATCH, SEQ)).astype(np.int32),
    attention_mask=(np.arange(SEQ)[None] < rs.randint(8, SEQ + 1, size=(BATCH, 1))).astype(
      np.int32
    ),
    token_type_ids=(np.arange(SEQ)[None] >= 6).repeat(BATCH, 0).astype(np.int32),
    masked_lm_positions=rs.randint(0, 8, size=(BATCH, PRED)).astype(np.int32),
    masked_lm_ids=rs.randint(5, CONFIG.vocab_size, size=(BATCH, PRED)).astype(np.int32),
    masked_lm_weights=(rs.rand(BATCH, PRED) > 0.25).astype(np.float32),
    sentence_order_label=rs.randint(0, 2, size=(BATCH,)).astype(np.int32),
  )


def _run_steps(mesh, params, batches, grad_accum_steps=1):
  model = af.AlbertForPreTraining(CONFIG)

  def stats_fn(p, batch, rng, train):
    out = model.apply(
      {"params": p},
      batch["input_ids"],
      batch["attention_mask"],
      batch["token_type_ids"],
      masked_positions=batch["masked_lm_positions"],
      deterministic=not train,
      rngs={"dropout": rng},
    )
    return losses.pretraining_stats(out.prediction_logits, out.sop_logits, batch)

  tx, schedule = optim.create_optimizer("lamb", 0.01, 10, 1)
  state, shardings = training.init_train_state(
    _init_fn(model), tx, mesh, jax.random.key(0), params=params
  )
  step = training.make_train_step(
    stats_fn,
    losses.pretraining_loss_weights,
    tx,
    shardings,
    mesh,
    grad_accum_steps=grad_accum_steps,
    learning_rate_fn=schedule,
  )
  history = []
  for b in batches:
    state, metrics = step(state, sharding.global_batch(b, mesh, BATCH))
    history.append(jax.device_get(metrics))
  return history, jax.device_get(state.params), state


@pytest.fixture(scope="module")
def reference():
  """Two steps on one device (step 0 has learning rate 0, so two are needed to see an update)."""
  rs = np.random.RandomState(0)
  batches = [_batch(rs) for _ in range(3)]
  model = af.AlbertForPreTraining(CONFIG)
  params = jax.device_get(sharding.unbox(jax.jit(_init_fn(model))(jax.random.key(0))))
  one = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  history, final, _ = _run_steps(one, params, batches)
  return batches, params, history, final


@pytest.mark.parametrize(
  "mesh_shape,accum",
  [((2, 2, 2), 1), ((1, 2, 4), 2)],
  ids=["data2-fsdp2-tensor2", "fsdp2-tensor4-accum2"],
)
def test_step_equals_one_device(reference, mesh_shape, accum):
  _need_devices(8)
  batches, params, ref_history, ref_final = reference
  mesh = sharding.make_mesh(*mesh_shape)
  history, final, state = _run_steps(mesh, params, batches, grad_accum_steps=accum)
  for ref, got in zip(ref_history, history):
    for name in (
      "loss",
      "masked_lm_loss",
      "sentence_order_loss",
      "masked_lm_accuracy",
      "sentence_order_accuracy",
      "grad_norm",
      "learning_rate",
    ):
      np.testing.assert_allclose(got[name], ref[name], rtol=2e-5, atol=1e-6, err_msg=name)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), final, ref_final
  )
  # The parameters really are split: an FFN kernel shard is smaller than the kernel.
  kernel = state.params["albert"]["encoder"]["albert_layer_groups_0"]["albert_layers_0"]["ffn"][
    "kernel"
  ]
  shard = kernel.addressable_shards[0].data.shape
  assert shard == (32 // mesh.shape["fsdp"], 64 // mesh.shape["tensor"])


def test_global_batch_rejects_wrong_rows():
  mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  assert sharding.process_batch_share(mesh, 8) == (0, 1)
  with pytest.raises(ValueError, match="rows"):
    sharding.global_batch({"input_ids": np.zeros((4, 3), np.int32)}, mesh, 8)
  _need_devices(8)
  with pytest.raises(ValueError, match="not divisible"):
    sharding.process_batch_share(sharding.make_mesh(8, 1, 1), 12)
