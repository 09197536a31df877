"""`albert_flax.nnx`: the models as flax.nnx Modules (through flax.nnx.bridge on the linen core).

Parity with the linen model on weights loaded from transformers, one shared layer copy over depth,
one training step with nnx.Optimizer under nnx.jit equal to the same step on the linen model, and
save_pretrained in every format back to the same outputs.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY, make_inputs, torch_reference
from flax import nnx, traverse_util

import albert_flax as af


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("hf_classifier")
  torch_reference("AlbertForSequenceClassification", num_labels=3).save_pretrained(directory)
  return directory


def _flat_shapes(tree) -> dict:
  return {"/".join(k): v.shape for k, v in traverse_util.flatten_dict(tree).items()}


def test_nnx_model_holds_the_linen_tree_once_over_depth():
  config = af.AlbertConfig(**TINY, num_labels=3)
  model = af.nnx.AlbertForSequenceClassification(config, rngs=nnx.Rngs(0))
  assert isinstance(model, nnx.Module)
  linen = af.AlbertForSequenceClassification(config)
  boxed = jax.eval_shape(linen.init, jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
  ours = nnx.state(model, nnx.Param).to_pure_dict()
  assert _flat_shapes(ours) == _flat_shapes(nn.meta.unbox(boxed))
  # One copy of each group's layers (no depth axis), whatever num_hidden_layers is.
  deep = nnx.eval_shape(lambda: af.nnx.AlbertModel(config.replace(num_hidden_layers=12)))
  deep_shapes = _flat_shapes(nnx.state(deep, nnx.Param).to_pure_dict())
  assert deep_shapes["albert/encoder/albert_layer_groups_0/albert_layers_0/ffn/kernel"] == (32, 37)
  # Logical axis names survive as sharding metadata.
  kernel = model.albert["encoder"]["albert_layer_groups_0"]["albert_layers_0"]["ffn"]["kernel"]
  assert kernel.get_metadata()["out_sharding"] == ("hidden", "mlp")


def test_nnx_from_pretrained_equals_linen_and_transformers(classifier_dir):
  import torch

  ids, mask, types = make_inputs()
  model = af.nnx.from_pretrained(classifier_dir, af.AlbertForSequenceClassification)
  assert type(model) is af.nnx.AlbertForSequenceClassification and model.config.num_labels == 3
  linen, params = af.from_pretrained(classifier_dir, af.AlbertForSequenceClassification)
  ours = nnx.jit(lambda m: m(ids, attention_mask=mask, token_type_ids=types))(model)
  theirs = linen.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types)
  np.testing.assert_allclose(ours.logits, theirs.logits, rtol=1e-6, atol=1e-6)
  reference = torch_reference("AlbertForSequenceClassification", num_labels=3)
  with torch.no_grad():
    expected = reference(
      torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(types)
    ).logits.numpy()
  np.testing.assert_allclose(ours.logits, expected, rtol=1e-5, atol=1e-5)


def test_nnx_from_pretrained_without_a_class_keeps_the_saved_head(classifier_dir):
  # The rule of af.from_pretrained: the saved architecture, its trained head included.
  model = af.nnx.from_pretrained(classifier_dir)
  assert type(model) is af.nnx.AlbertForSequenceClassification and model.config.num_labels == 3
  _, params = af.from_pretrained(classifier_dir)
  np.testing.assert_array_equal(
    model.linen_params()["classifier"]["kernel"], params["classifier"]["kernel"]
  )
  # One parameter name in both (ModelClass); the former spelling still works.
  by_keyword = af.nnx.from_pretrained(classifier_dir, ModelClass=af.AlbertModel)
  assert type(by_keyword) is af.nnx.AlbertModel
  former = af.nnx.from_pretrained(classifier_dir, model_class="AlbertModel")
  assert type(former) is af.nnx.AlbertModel


def test_one_nnx_training_step_equals_the_linen_step(classifier_dir):
  ids, mask, types = make_inputs()
  labels = jnp.array([0, 2, 1])
  tx = optax.adamw(1e-2)
  model = af.nnx.from_pretrained(
    classifier_dir, "AlbertForSequenceClassification", rngs=nnx.Rngs(dropout=7)
  )
  linen, params = af.from_pretrained(classifier_dir, af.AlbertForSequenceClassification)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  def loss_of(logits):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @nnx.jit
  def nnx_step(model, optimizer):
    def loss_fn(model):
      return loss_of(model(ids, attention_mask=mask, token_type_ids=types).logits)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  @jax.jit
  def linen_step(params):
    def loss_fn(params):
      out = linen.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types)
      return loss_of(out.logits)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    return loss, optax.apply_updates(params, updates)

  loss, new_params = linen_step(params)
  nnx_loss = nnx_step(model, optimizer)
  np.testing.assert_allclose(nnx_loss, loss, rtol=1e-6)
  got = traverse_util.flatten_dict(model.linen_params())
  want = traverse_util.flatten_dict(new_params)
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg="/".join(k))
  old = traverse_util.flatten_dict(params)
  assert not np.allclose(got[("classifier", "kernel")], old[("classifier", "kernel")])
  assert nnx_step(model, optimizer) < nnx_loss  # a second step lowers the loss

  # Dropout (classifier_dropout 0.1) draws a new key from the model's stream on every call.
  dropped = nnx.jit(lambda m: m(ids, deterministic=False).logits)
  first, second = dropped(model), dropped(model)
  assert not np.allclose(first, second)
  assert not np.allclose(first, nnx.jit(lambda m: m(ids).logits)(model))


@pytest.mark.parametrize("format", ["orbax", "hf", "tf"])
def test_nnx_save_pretrained_every_format(format, classifier_dir, tmp_path):
  ids, mask, types = make_inputs()
  model = af.nnx.from_pretrained(classifier_dir, af.nnx.AlbertForSequenceClassification)
  af.nnx.save_pretrained(tmp_path, model, format=format)
  reloaded = af.nnx.from_pretrained(tmp_path, af.nnx.AlbertForSequenceClassification)
  assert reloaded.config.num_labels == 3
  for k, v in traverse_util.flatten_dict(model.linen_params()).items():
    np.testing.assert_array_equal(traverse_util.flatten_dict(reloaded.linen_params())[k], v)
  with pytest.raises(TypeError, match="af.nnx model"):
    af.nnx.save_pretrained(tmp_path, object())


def test_nnx_rejects_other_classes_and_wrong_params():
  with pytest.raises(ValueError, match="not an ALBERT model class"):
    af.nnx.from_pretrained("unused", nn.Dense)
  config = af.AlbertConfig(**TINY)
  params = nnx.eval_shape(lambda: af.nnx.AlbertModel(config)).linen_params()
  with pytest.raises(ValueError, match="pooler"):
    af.nnx.AlbertForTokenClassification(config, params=params)
  twin = nnx.eval_shape(lambda: af.nnx.from_linen(af.AlbertModel(config), params))
  assert type(twin) is af.nnx.AlbertModel
