"""Checkpoint name tables: another implementation's tensor names <-> this package's parameter paths.

One mechanism (`NameMap`) and one table per layout:

  HF_NAMES          transformers' state dict (`albert.encoder.albert_layer_groups.0.albert_layers.0.
                    ffn.weight`), PyTorch Linear weights [out, in]
  GOOGLE_TF_NAMES   google-research/albert's TF1 variables (`bert/encoder/transformer/group_0/
                    inner_group_0/ffn_1/intermediate/dense/kernel`): the English releases and
                    Google's Chinese albert_*_zh
  BRIGHTMART_TF_NAMES  brightmart/albert_zh's TF1 variables (BERT's layer names under
                    `bert/encoder/layer_shared/`, or `layer_<n>/` when not shared; see
                    convert_tf for its embedding projection, which has no row here)

A table row is (our module path, their module name, kind); `{g}` / `{i}` stand for a layer group
and an inner layer and may appear on either side (a side without them fixes them, e.g. brightmart's
one shared layer is our group 0, layer 0). A kind lists the leaves of the module as (our leaf,
their leaf, transpose); an empty leaf of theirs means the module name is the tensor's name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

import numpy as np

Row = tuple[str, str, str]
Leaves = Mapping[str, tuple[tuple[str, str, bool], ...]]


@dataclasses.dataclass(frozen=True)
class NameMap:
  """Renames between one layout's tensor names and our '/'-joined parameter paths.

  rows: (our module path, their module name, kind); leaves: kind -> ((our leaf, their leaf,
  transpose), ...); separator: what joins their module name and leaf ("." for transformers, "/"
  for TF).
  """

  rows: tuple[Row, ...]
  leaves: Leaves
  separator: str

  def __post_init__(self):
    forward, backward = [], []
    for ours, theirs, kind in self.rows:
      for our_leaf, their_leaf, transpose in self.leaves[kind]:
        their_name = self.separator.join(p for p in (theirs, their_leaf) if p)
        our_path = f"{ours}/{our_leaf}"
        forward.append((_regex(their_name), our_path, transpose))
        backward.append((_regex(our_path), their_name, transpose))
    # Frozen dataclass: the compiled rules are derived state, set once here.
    object.__setattr__(self, "_forward", tuple(forward))
    object.__setattr__(self, "_backward", tuple(backward))

  def to_ours(self, name: str) -> tuple[str, bool] | None:
    """Their tensor name -> (our path, transpose?), or None if the table has no such name."""
    return _apply(self._forward, name)

  def to_theirs(self, path: str) -> tuple[str, bool] | None:
    """Our path -> (their tensor name, transpose?), or None if the layout has no such tensor."""
    return _apply(self._backward, path)

  def knows_path(self, path: str) -> bool:
    return any(regex.match(path) for regex, _, _ in self._backward)

  def rename(
    self, state: Mapping[str, np.ndarray], ignore: Iterable[str] = ()
  ) -> tuple[dict[str, tuple[str, np.ndarray, bool]], list[tuple[str, tuple[int, ...]]]]:
    """{their name: array} -> ({our path: (their name, array in our layout, transposed?)},
    [(unknown name, shape)]). Names in `ignore` are skipped."""
    ignore = set(ignore)
    tensors, unknown = {}, []
    for name, array in state.items():
      if name in ignore:
        continue
      mapped = self.to_ours(name)
      if mapped is None:
        unknown.append((name, tuple(np.shape(array))))
        continue
      path, transpose = mapped
      tensors[path] = (name, array.T if transpose else array, transpose)
    return tensors, unknown


def _regex(template: str) -> re.Pattern:
  escaped = re.escape(template).replace(r"\{g\}", r"(?P<g>\d+)").replace(r"\{i\}", r"(?P<i>\d+)")
  return re.compile(escaped + "$")


def _apply(rules, name: str) -> tuple[str, bool] | None:
  for regex, template, transpose in rules:
    m = regex.match(name)
    if m:
      return template.format(**m.groupdict()), transpose
  return None


# ============================================================================= the tables

_OURS_LAYER = "albert/encoder/albert_layer_groups_{g}/albert_layers_{i}/"
# The modules every layout names, in our paths (the task heads differ per layout).
_EMBEDDINGS = (
  "albert/embeddings/word_embeddings",
  "albert/embeddings/position_embeddings",
  "albert/embeddings/token_type_embeddings",
  "albert/embeddings/LayerNorm",
)

# One layer's modules in our names, with their kind of leaves (every layout has them all).
_LAYER_MODULES = {
  "attention/query": "dense",
  "attention/key": "dense",
  "attention/value": "dense",
  "attention/dense": "dense",
  "attention/LayerNorm": "ln",
  "ffn": "dense",
  "ffn_output": "dense",
  "full_layer_layer_norm": "ln",
}


def _layer_rows(ours: str, theirs: str, names: tuple[str, ...]) -> tuple[Row, ...]:
  """The rows of one layer: our module under `ours` -> their `names` (in _LAYER_MODULES' order)
  under `theirs`."""
  return tuple(
    (ours + module, theirs + name, kind)
    for (module, kind), name in zip(_LAYER_MODULES.items(), names, strict=True)
  )


# ------------------------------------------------------------------------- transformers
_HF_LAYER = "albert.encoder.albert_layer_groups.{g}.albert_layers.{i}."
HF_NAMES = NameMap(
  rows=(
    (_EMBEDDINGS[0], "albert.embeddings.word_embeddings", "embed"),
    (_EMBEDDINGS[1], "albert.embeddings.position_embeddings", "embed"),
    (_EMBEDDINGS[2], "albert.embeddings.token_type_embeddings", "embed"),
    (_EMBEDDINGS[3], "albert.embeddings.LayerNorm", "ln"),
    (
      "albert/encoder/embedding_hidden_mapping_in",
      "albert.encoder.embedding_hidden_mapping_in",
      "dense",
    ),
  )
  + _layer_rows(_OURS_LAYER, _HF_LAYER, tuple(m.replace("/", ".") for m in _LAYER_MODULES))
  + (
    ("albert/pooler", "albert.pooler", "dense"),
    ("predictions/dense", "predictions.dense", "dense"),
    ("predictions/LayerNorm", "predictions.LayerNorm", "ln"),
    ("predictions", "predictions", "bias"),
    ("sop_classifier/classifier", "sop_classifier.classifier", "dense"),
    ("classifier", "classifier", "dense"),
    ("qa_outputs", "qa_outputs", "dense"),
  ),
  # PyTorch Linear.weight is [out, in], a flax kernel [in, out].
  leaves={
    "dense": (("kernel", "weight", True), ("bias", "bias", False)),
    "ln": (("scale", "weight", False), ("bias", "bias", False)),
    "embed": (("embedding", "weight", False),),
    "bias": (("bias", "bias", False),),
  },
  separator=".",
)

# ------------------------------------------------------- TF1: google-research and albert_zh
# TF kernels are [in, out] like flax's; only the heads' `output_weights` ([out, in]) transpose.
_TF_LEAVES = {
  "embed": (("embedding", "", False),),
  "ln": (("scale", "gamma", False), ("bias", "beta", False)),
  "dense": (("kernel", "kernel", False), ("bias", "bias", False)),
  "output_bias": (("bias", "output_bias", False),),
  "output": (("kernel", "output_weights", True), ("bias", "output_bias", False)),
}
# Names both TF layouts share: embeddings (albert_zh's word table is E wide, see convert_tf),
# pooler and the pretraining heads of run_pretraining.py.
_TF_SHARED_ROWS = (
  (_EMBEDDINGS[0], "bert/embeddings/word_embeddings", "embed"),
  (_EMBEDDINGS[1], "bert/embeddings/position_embeddings", "embed"),
  (_EMBEDDINGS[2], "bert/embeddings/token_type_embeddings", "embed"),
  (_EMBEDDINGS[3], "bert/embeddings/LayerNorm", "ln"),
  ("albert/pooler", "bert/pooler/dense", "dense"),
  ("predictions/dense", "cls/predictions/transform/dense", "dense"),
  ("predictions/LayerNorm", "cls/predictions/transform/LayerNorm", "ln"),
  ("predictions", "cls/predictions", "output_bias"),
  ("sop_classifier/classifier", "cls/seq_relationship", "output"),
  ("classifier", "", "output"),  # classifier_utils.py / RACE: output_{weights,bias} at the root
)

_GOOGLE_LAYER = "bert/encoder/transformer/group_{g}/inner_group_{i}/"
GOOGLE_TF_NAMES = NameMap(
  rows=_TF_SHARED_ROWS
  + (
    (
      "albert/encoder/embedding_hidden_mapping_in",
      "bert/encoder/embedding_hidden_mapping_in",
      "dense",
    ),
  )
  + _layer_rows(
    _OURS_LAYER,
    _GOOGLE_LAYER,
    (
      "attention_1/self/query",
      "attention_1/self/key",
      "attention_1/self/value",
      "attention_1/output/dense",
      "LayerNorm",
      "ffn_1/intermediate/dense",
      "ffn_1/intermediate/output/dense",
      "LayerNorm_1",
    ),
  )
  + (
    ("qa_outputs", "cls/squad", "output"),  # squad_utils.py's v1 head
  ),
  leaves=_TF_LEAVES,
  separator="/",
)


def _brightmart_layer_rows(ours: str, theirs: str) -> tuple[Row, ...]:
  """albert_zh's transformer_model (BERT's post-LN layer names) under the scope `theirs`."""
  return _layer_rows(
    ours,
    theirs,
    (
      "attention/self/query",
      "attention/self/key",
      "attention/self/value",
      "attention/output/dense",
      "attention/output/LayerNorm",
      "intermediate/dense",
      "output/dense",
      "output/LayerNorm",
    ),
  )


BRIGHTMART_TF_NAMES = NameMap(
  rows=_TF_SHARED_ROWS
  # One layer shared by every step (share_parameter_across_layers=True, their default), or one
  # layer per step: our G = L groups of one layer.
  + _brightmart_layer_rows(
    "albert/encoder/albert_layer_groups_0/albert_layers_0/", "bert/encoder/layer_shared/"
  )
  + _brightmart_layer_rows(
    "albert/encoder/albert_layer_groups_{g}/albert_layers_0/", "bert/encoder/layer_{g}/"
  ),
  leaves=_TF_LEAVES,
  separator="/",
)
# albert_zh's E -> H projection of the word embeddings (`word_embeddings_2`, [E, H]).
BRIGHTMART_PROJECTION = "bert/embeddings/word_embeddings_2"
