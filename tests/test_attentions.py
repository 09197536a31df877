"""`output_attentions=True`: every model returns each layer's attention probabilities as
transformers' PyTorch ALBERT does (a tuple of L * inner_group_num arrays [batch, heads, seq, seq]).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import TINY, make_inputs, torch_reference

import albert_flax as af


def _torch_attentions(reference, ids, mask, types) -> tuple[np.ndarray, ...]:
  import torch

  with torch.no_grad():
    out = reference(
      torch.tensor(ids),
      attention_mask=torch.tensor(mask),
      token_type_ids=torch.tensor(types),
      output_attentions=True,
    )
  return tuple(a.numpy() for a in out.attentions)


# Values on two heads (the others pass the backbone's tuple on the same way: shapes below);
# scan_layers=False and a fused attention_implementation take other code paths than the default.
@pytest.mark.parametrize(
  "class_name, overrides",
  [
    ("AlbertForPreTraining", {}),
    ("AlbertForMultipleChoice", {}),
    ("AlbertModel", dict(scan_layers=False, attention_implementation="xla")),
  ],
  ids=["pretraining", "multiple-choice", "unrolled-xla"],
)
def test_attentions_equal_transformers(class_name, overrides, tmp_path):
  reference = torch_reference(class_name)
  reference.save_pretrained(tmp_path)
  ids, mask, types = make_inputs(choices=2 if class_name == "AlbertForMultipleChoice" else None)
  expected = _torch_attentions(reference, ids, mask, types)
  # TINY: L=4 steps, each running one group of 2 distinct layers.
  assert len(expected) == TINY["num_hidden_layers"] * TINY["inner_group_num"]

  model, params = af.from_pretrained(tmp_path, getattr(af, class_name), **overrides)
  out = jax.jit(
    lambda p: model.apply(
      {"params": p}, ids, attention_mask=mask, token_type_ids=types, output_attentions=True
    )
  )(params)
  assert len(out.attentions) == len(expected)
  for i, (got, want) in enumerate(zip(out.attentions, expected)):
    assert got.shape == want.shape and got.shape[-3:] == (TINY["num_attention_heads"], 9, 9)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"attentions[{i}]")


@pytest.mark.parametrize("class_name", list(af.MODEL_CLASSES))
def test_every_model_returns_attentions_only_when_asked(class_name):
  model = getattr(af, class_name)(af.AlbertConfig(**TINY))
  ids = make_inputs(choices=2 if class_name == "AlbertForMultipleChoice" else None)[0]
  variables = jax.eval_shape(model.init, jax.random.key(0), ids)
  plain = jax.eval_shape(model.apply, variables, ids)
  assert plain.attentions is None
  out = jax.eval_shape(lambda v: model.apply(v, ids, output_attentions=True), variables)
  rows = int(np.prod(np.shape(ids)[:-1]))
  assert [a.shape for a in out.attentions] == [(rows, TINY["num_attention_heads"], 9, 9)] * 8
