"""Every public name of `albert_flax` is documented; models and outputs document their shapes.

Public names are `albert_flax.__all__` (the eagerly imported names and those its `__getattr__`
loads lazily) that are classes or functions; plain values such as MODEL_CLASSES are skipped.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types

import flax.linen as nn
import flax.struct
import pytest

import albert_flax

# A shape in brackets that starts with the batch axis: [batch, seq, hidden], [batch * ...].
SHAPE = re.compile(r"\[batch\b")


def _public() -> dict[str, object]:
  objects = {n: getattr(albert_flax, n) for n in albert_flax.__all__}
  return {
    n: o
    for n, o in objects.items()
    if not isinstance(o, types.ModuleType) and (inspect.isclass(o) or callable(o))
  }


def own_doc(obj: object) -> str | None:
  """The docstring written on `obj` itself, or None.

  Not inherited (a class's `__doc__` attribute is None when its body has none), and not the
  "Name(field: type, ...)" line that `dataclasses` (and so flax.struct and linen Modules) writes
  into an undocumented class.
  """
  if inspect.isclass(obj):
    doc = obj.__dict__.get("__doc__")
    if doc and dataclasses.is_dataclass(obj) and doc.startswith(obj.__name__ + "("):
      return None
  else:
    doc = getattr(obj, "__doc__", None)
  return doc if doc and doc.strip() else None


def missing_docs(public: dict[str, object]) -> list[str]:
  """Names (and Name.__call__ for models) without a docstring, or without shapes where needed."""
  problems = []
  for name, obj in sorted(public.items()):
    doc = own_doc(obj)
    if doc is None:
      problems.append(f"{name}: no docstring")
      continue
    if inspect.isclass(obj) and issubclass(obj, nn.Module):
      call = obj.__dict__.get("__call__")
      call_doc = own_doc(call) if call is not None else None
      if call_doc is None:
        problems.append(f"{name}.__call__: no docstring")
      elif not SHAPE.search(call_doc):
        problems.append(f"{name}.__call__: docstring has no [batch, ...] shape")
    elif inspect.isclass(obj) and dataclasses.is_dataclass(obj) and name.endswith("Output"):
      if not SHAPE.search(doc):
        problems.append(f"{name}: docstring has no [batch, ...] shape")
      for field in dataclasses.fields(obj):
        # Each field named on a line that carries its shape (or on the line after it).
        if not re.search(rf"\b{field.name}\b[^\n]*(\n[^\n]*)?\[", doc):
          problems.append(f"{name}.{field.name}: no shape in the docstring")
  return problems


def test_public_names_are_found():
  public = _public()
  # The names the design's public API promises, including the lazily loaded ones.
  for name in (
    "AlbertConfig",
    "AlbertModel",
    "AlbertForPreTraining",
    "AlbertModelOutput",
    "AlbertTokenizer",
    "from_pretrained",
    "save_pretrained",
    "train_tokenizer",
  ):
    assert name in public, name
  assert "MODEL_CLASSES" not in public
  # __all__ is complete: no public attribute of the package escapes the checks below.
  attributes = {
    n
    for n, o in vars(albert_flax).items()
    if not n.startswith("_") and not isinstance(o, types.ModuleType)
  }
  assert attributes <= set(albert_flax.__all__), attributes - set(albert_flax.__all__)
  assert all(hasattr(albert_flax, n) for n in albert_flax.__all__)


def test_every_public_name_has_a_docstring_and_models_and_outputs_have_shapes():
  problems = missing_docs(_public())
  assert not problems, "\n".join(problems)


def test_the_check_catches_missing_docstrings():
  """The checker itself: undocumented classes, __call__s and fields without shapes fail."""

  @flax.struct.dataclass
  class BareOutput:
    logits: object

  @flax.struct.dataclass
  class HalfOutput:
    """logits: [batch, num_labels]."""

    logits: object
    extra: object

  class BareModel(nn.Module):
    """Documented class, undocumented __call__."""

    def __call__(self, x):
      return x

  class ShapelessModel(nn.Module):
    """Documented class and __call__, but no shape."""

    def __call__(self, x):
      """Returns x."""
      return x

  def bare_function():
    pass

  problems = missing_docs(
    {
      "BareOutput": BareOutput,
      "HalfOutput": HalfOutput,
      "BareModel": BareModel,
      "ShapelessModel": ShapelessModel,
      "bare_function": bare_function,
    }
  )
  assert problems == [
    "BareModel.__call__: no docstring",
    "BareOutput: no docstring",
    "HalfOutput.extra: no shape in the docstring",
    "ShapelessModel.__call__: docstring has no [batch, ...] shape",
    "bare_function: no docstring",
  ]


@pytest.mark.parametrize("name", sorted(albert_flax.heads.MODEL_CLASSES))
def test_model_call_docstrings_name_the_dropout_rng(name):
  doc = own_doc(albert_flax.heads.MODEL_CLASSES[name].__dict__["__call__"])
  assert '"dropout"' in doc, name
