"""The ALBERT models as `flax.nnx` Modules that hold their weights.

    from flax import nnx
    import albert_flax as af

    model = af.nnx.AlbertForSequenceClassification(config, rngs=nnx.Rngs(0))
    model = af.nnx.from_pretrained(path, af.AlbertForSequenceClassification, num_labels=3)
    out = model(input_ids, attention_mask=mask)                 # deterministic by default
    optimizer = nnx.Optimizer(model, optax.adamw(1e-4), wrt=nnx.Param)
    logits = model(input_ids, deterministic=False).logits       # dropout from the model's rngs
    af.nnx.save_pretrained("out/", model, format="hf")          # or "orbax", "tf"

Each class wraps the linen model of the same name through `flax.nnx.bridge.ToNNX`, so the two
share one implementation of the numerics: the NNX model computes exactly what the linen model
computes, and the shared layer stays one `nn.scan` with broadcast parameters (one copy of each
group's weights whatever the depth, one compiled loop body). The bridge gives a clean tree: the
model's `nnx.Param`s sit at the linen paths (`model.albert["encoder"]["albert_layer_groups_0"]...`,
`nnx.state(model, nnx.Param)` is the linen `params` dict) and keep their logical axis names as
`out_sharding` metadata. Under `nnx.jit` the traced program is the linen model's, so a step costs
what the linen step costs (the bridge's work happens at trace time).

Dropout keys come from the model's own `nnx.Rngs` stream (a "dropout" stream, else "default"),
advanced on every call with deterministic=False, as NNX modules do.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import nnx
from flax.nnx import bridge
from flax.nnx.bridge import variables as bridge_variables

from albert_flax import checkpoints, heads
from albert_flax.config import AlbertConfig


@functools.lru_cache(maxsize=16)
def _boxed_init(linen_model: nn.Module):
  """A jitted key -> the linen model's variables (with their logical-axis boxes)."""
  dummy = checkpoints.dummy_inputs(linen_model)
  return jax.jit(lambda key: linen_model.init(key, dummy))


def _boxes(linen_model: nn.Module) -> dict:
  """The linen model's variables with abstract values: the boxes (axis names) without memory."""
  return jax.eval_shape(_boxed_init(linen_model), jax.random.key(0))


def _key(rngs: nnx.Rngs, stream: str) -> jax.Array:
  """A key from `rngs`' stream `stream`, else its "default", else any stream it has."""
  names = list(dict(rngs.items()))
  if stream in names or "default" in names:
    return getattr(rngs, stream)()
  if not names:
    raise ValueError("rngs has no stream: pass e.g. nnx.Rngs(0)")
  return getattr(rngs, names[0])()


class _BridgedModel(bridge.ToNNX):
  """An nnx.Module holding the parameters of the linen model class `_linen_class`."""

  _linen_class: type[nn.Module]

  def __init__(
    self, config: AlbertConfig, *, rngs: nnx.Rngs | None = None, params: Mapping | None = None
  ):
    """Build the model.

    Args:
      config: the model's AlbertConfig.
      rngs: `nnx.Rngs`; "params" (else "default") initializes the weights, "dropout" (else
        "default") seeds the dropout stream. None = nnx.Rngs(0).
      params: an existing (linen) parameter tree of this model to hold instead of fresh weights
        (what `from_pretrained` passes); arrays are used as they are (no copy).
    """
    rngs = nnx.Rngs(0) if rngs is None else rngs
    linen_model = self._linen_class(config)
    # Only the dropout stream travels to the linen apply; parameters are never created there.
    super().__init__(linen_model, rngs=nnx.Rngs(dropout=_key(rngs, "dropout")))
    if params is None:
      variables = _boxed_init(linen_model)(_key(rngs, "params"))
    else:
      if isinstance(params, Mapping) and set(params) == {"params"}:  # a variables dict
        params = params["params"]
      flat = checkpoints.flat_parameters(params)
      checkpoints.check_parameters(
        flat, checkpoints.expected_shapes(linen_model), self._linen_class.__name__
      )
      # Put the arrays in the init's boxes so the logical axis names come along.
      boxes = _boxes(linen_model)
      variables = jax.tree.map(
        lambda box, value: box.replace_boxed(value) if isinstance(box, nn.Partitioned) else value,
        boxes,
        {"params": nn.meta.unbox(dict(params))},
        is_leaf=lambda x: isinstance(x, nn.Partitioned),
      )
    # Variables get their shardings from jit / a mesh, not eagerly when created (on one CPU
    # there is no mesh to place them on); the flag is stored per variable, so the optimizer's
    # state made from them inherits it.
    with nnx.use_eager_sharding(False):
      for name, value in bridge_variables.linen_vars_to_nnx_attrs(variables).items():
        setattr(self, name, nnx.data(value))

  @property
  def config(self) -> AlbertConfig:
    """The model's AlbertConfig."""
    return self.to_nnx__module.config

  @property
  def linen_module(self) -> nn.Module:
    """The linen model this module runs (same class name, same config)."""
    return self.to_nnx__module

  def linen_params(self) -> dict:
    """The parameters as the linen model's plain `params` tree (the arrays themselves)."""
    return nnx.state(self, nnx.Param).to_pure_dict()


def _model_class(linen_class: type[nn.Module]) -> type[_BridgedModel]:
  name = linen_class.__name__
  doc = (
    f"`albert_flax.{name}` as an nnx.Module holding its weights.\n\n"
    f"    model = af.nnx.{name}(config, rngs=nnx.Rngs(0))\n"
    "    out = model(input_ids, attention_mask=None, token_type_ids=None, ...)\n\n"
    f"Call it with the arguments of the linen `{name}.__call__` (same shapes, same output\n"
    "dataclass); deterministic=False applies dropout with keys from the model's rngs.\n"
  )
  return type(name, (_BridgedModel,), {"_linen_class": linen_class, "__doc__": doc})


AlbertModel = _model_class(heads.AlbertModel)
AlbertForPreTraining = _model_class(heads.AlbertForPreTraining)
AlbertForMaskedLM = _model_class(heads.AlbertForMaskedLM)
AlbertForSequenceClassification = _model_class(heads.AlbertForSequenceClassification)
AlbertForMultipleChoice = _model_class(heads.AlbertForMultipleChoice)
AlbertForTokenClassification = _model_class(heads.AlbertForTokenClassification)
AlbertForQuestionAnswering = _model_class(heads.AlbertForQuestionAnswering)

# Class name -> NNX class: one for each linen task model (heads.MODEL_CLASSES), by the same name.
MODEL_CLASSES: dict[str, type[_BridgedModel]] = {
  name: globals()[name] for name in heads.MODEL_CLASSES
}


def _nnx_class(model_class: Any) -> type[_BridgedModel]:
  """An NNX class, its linen twin or either's name -> the NNX class."""
  name = model_class if isinstance(model_class, str) else getattr(model_class, "__name__", None)
  if name not in MODEL_CLASSES or not (
    isinstance(model_class, str)
    or model_class is MODEL_CLASSES[name]
    or model_class is heads.MODEL_CLASSES[name]
  ):
    raise ValueError(
      f"{model_class!r} is not an ALBERT model class; choose one of {sorted(MODEL_CLASSES)}"
    )
  return MODEL_CLASSES[name]


def from_linen(
  linen_model: nn.Module, params: Mapping, *, rngs: nnx.Rngs | None = None
) -> _BridgedModel:
  """The NNX twin of a linen model holding `params` (its plain or boxed `params` tree)."""
  cls = _nnx_class(type(linen_model))
  return cls(linen_model.config, rngs=rngs, params=params)


def from_pretrained(
  path: str | os.PathLike,
  ModelClass: Any = None,
  *,
  rngs: nnx.Rngs | None = None,
  model_class: Any = None,
  **kwargs: Any,
) -> _BridgedModel:
  """Load a checkpoint as an NNX model: `af.from_pretrained` (every layout it reads), then wrap.

  Args:
    path: a directory, TF checkpoint prefix or Hub id, as for `af.from_pretrained`.
    ModelClass: an NNX class (af.nnx.AlbertFor...), its linen twin (af.AlbertFor...) or the
      class name; None: the class the checkpoint was saved as, else AlbertForPreTraining (the
      rule of `af.from_pretrained`, so a fine-tuned head is never replaced by random ones).
    rngs: the model's nnx.Rngs (dropout stream); None = nnx.Rngs(0).
    model_class: the former name of `ModelClass`, still accepted.
    **kwargs: passed to `af.from_pretrained` (num_labels=, dtype=, rng=, ...).
  Returns:
    The NNX model holding the checkpoint's weights.
  """
  if model_class is not None:
    if ModelClass is not None:
      raise TypeError("pass ModelClass or its former name model_class, not both")
    ModelClass = model_class
  linen_class = None if ModelClass is None else _nnx_class(ModelClass)._linen_class
  linen_model, params = checkpoints.from_pretrained(path, linen_class, **kwargs)
  return from_linen(linen_model, params, rngs=rngs)


def save_pretrained(
  path: str | os.PathLike, model: _BridgedModel, format: str = "orbax", **kwargs: Any
) -> str:
  """`af.save_pretrained` for an NNX model (format "orbax", "hf" or "tf"; tokenizer=...)."""
  if not isinstance(model, _BridgedModel):
    raise TypeError(f"expected an af.nnx model, got {type(model).__name__}")
  return checkpoints.save_pretrained(
    path, model.linen_module, model.linen_params(), format=format, **kwargs
  )
