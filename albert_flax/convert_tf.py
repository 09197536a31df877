"""google-research/albert TF1 checkpoint names <-> this package's parameter tree, and TF files.

The original code (modeling.py, run_pretraining.py, classifier_utils.py, squad_utils.py) names its
variables as below; `transformers.load_tf_weights_in_albert` reads the same names. TF kernels are
[in, out] like flax's, so only the `output_weights` matrices ([out, in]) are transposed.

    bert/embeddings/{word,position,token_type}_embeddings, bert/embeddings/LayerNorm/{gamma,beta}
    bert/encoder/embedding_hidden_mapping_in/{kernel,bias}
    bert/encoder/transformer/group_{g}/inner_group_{i}/
        attention_1/self/{query,key,value}/{kernel,bias}, attention_1/output/dense/{kernel,bias}
        LayerNorm/{gamma,beta}                          (after attention)
        ffn_1/intermediate/dense/{kernel,bias}, ffn_1/intermediate/output/dense/{kernel,bias}
        LayerNorm_1/{gamma,beta}                        (after the FFN)
    bert/pooler/dense/{kernel,bias}
    cls/predictions/transform/{dense/{kernel,bias}, LayerNorm/{gamma,beta}}
    cls/predictions/output_bias
    cls/seq_relationship/output_{weights [2, H], bias}  (SOP)
    output_{weights [labels, H], bias}                  (classifier_utils / RACE heads)
    cls/squad/output_{weights [2, H], bias}             (the SQuAD v1 head)

Optimizer slots (`*/adam_m`, `*/adam_v`) and `global_step` are not model weights and are skipped.
TensorFlow is imported only here, lazily: `pip install albert-flax[tf]`.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from albert_flax.config import AlbertConfig

_OURS_LAYER = "albert/encoder/albert_layer_groups_{g}/albert_layers_{i}/"
_TF_LAYER = "bert/encoder/transformer/group_{g}/inner_group_{i}/"
# (our path, original variable scope, kind); see the module docstring.
MODULES: tuple[tuple[str, str, str], ...] = (
  ("albert/embeddings/word_embeddings", "bert/embeddings/word_embeddings", "embed"),
  ("albert/embeddings/position_embeddings", "bert/embeddings/position_embeddings", "embed"),
  ("albert/embeddings/token_type_embeddings", "bert/embeddings/token_type_embeddings", "embed"),
  ("albert/embeddings/LayerNorm", "bert/embeddings/LayerNorm", "ln"),
  (
    "albert/encoder/embedding_hidden_mapping_in",
    "bert/encoder/embedding_hidden_mapping_in",
    "dense",
  ),
  (_OURS_LAYER + "attention/query", _TF_LAYER + "attention_1/self/query", "dense"),
  (_OURS_LAYER + "attention/key", _TF_LAYER + "attention_1/self/key", "dense"),
  (_OURS_LAYER + "attention/value", _TF_LAYER + "attention_1/self/value", "dense"),
  (_OURS_LAYER + "attention/dense", _TF_LAYER + "attention_1/output/dense", "dense"),
  (_OURS_LAYER + "attention/LayerNorm", _TF_LAYER + "LayerNorm", "ln"),
  (_OURS_LAYER + "ffn", _TF_LAYER + "ffn_1/intermediate/dense", "dense"),
  (_OURS_LAYER + "ffn_output", _TF_LAYER + "ffn_1/intermediate/output/dense", "dense"),
  (_OURS_LAYER + "full_layer_layer_norm", _TF_LAYER + "LayerNorm_1", "ln"),
  ("albert/pooler", "bert/pooler/dense", "dense"),
  ("predictions/dense", "cls/predictions/transform/dense", "dense"),
  ("predictions/LayerNorm", "cls/predictions/transform/LayerNorm", "ln"),
  ("predictions", "cls/predictions", "output_bias"),
  ("sop_classifier/classifier", "cls/seq_relationship", "output"),
  ("classifier", "", "output"),
  ("qa_outputs", "cls/squad", "output"),
)
# (our leaf, TF leaf, transpose) per kind; an empty TF leaf means the scope is the variable.
_LEAVES = {
  "embed": (("embedding", "", False),),
  "ln": (("scale", "gamma", False), ("bias", "beta", False)),
  "dense": (("kernel", "kernel", False), ("bias", "bias", False)),
  "output_bias": (("bias", "output_bias", False),),
  "output": (("kernel", "output_weights", True), ("bias", "output_bias", False)),
}
_OPTIMIZER_SLOTS = ("adam_m", "adam_v", "AdamWeightDecayOptimizer", "AdamWeightDecayOptimizer_1")
# The original code's activations (modeling.get_activation); its "gelu" is the tanh approximation.
_ORIGINAL_ACTIVATIONS = {
  "gelu_new": "gelu",
  "gelu_pytorch_tanh": "gelu",
  "relu": "relu",
  "tanh": "tanh",
  "linear": "linear",
}


def _regex(template: str) -> re.Pattern:
  escaped = re.escape(template).replace(r"\{g\}", r"(?P<g>\d+)").replace(r"\{i\}", r"(?P<i>\d+)")
  return re.compile(escaped + "$")


def _build_rules():
  forward, backward = [], []
  for ours, scope, kind in MODULES:
    for our_leaf, tf_leaf, transpose in _LEAVES[kind]:
      tf_name = "/".join(p for p in (scope, tf_leaf) if p)
      our_path = f"{ours}/{our_leaf}"
      forward.append((_regex(tf_name), our_path, transpose))
      backward.append((_regex(our_path), tf_name, transpose))
  return forward, backward


_FORWARD, _BACKWARD = _build_rules()


def is_ignored(name: str) -> bool:
  """Optimizer slots and step counters: not model weights."""
  parts = name.split("/")
  return name == "global_step" or any(p in _OPTIMIZER_SLOTS for p in parts)


def tf_name_to_path(name: str) -> tuple[str, bool] | None:
  """Original variable name -> (our '/'-joined path, transpose?), or None if not ALBERT's."""
  if name.startswith("module/"):  # exported through TF Hub
    name = name[len("module/") :]
  for regex, template, transpose in _FORWARD:
    m = regex.match(name)
    if m:
      return template.format(**m.groupdict()), transpose
  return None


def path_to_tf_name(path: str) -> tuple[str, bool]:
  """Our '/'-joined path -> (original variable name, transpose?)."""
  for regex, template, transpose in _BACKWARD:
    m = regex.match(path)
    if m:
      return template.format(**m.groupdict()), transpose
  raise ValueError(f"Parameter {path!r} has no name in the original TF checkpoint format")


# ----------------------------------------------------------------------------- files


def _tf():
  try:
    import tensorflow as tf
  except ImportError:
    raise ImportError(
      "Reading or writing original (TF1) ALBERT checkpoints needs TensorFlow: "
      "`pip install albert-flax[tf]`"
    ) from None
  return tf


def _checkpoint_step(prefix: str) -> float:
  m = re.search(r"-(\d+)$", prefix)
  return int(m.group(1)) if m else -1


def find_checkpoint(path: str) -> tuple[str, str] | None:
  """(checkpoint prefix, albert_config.json path) if `path` is an original checkpoint, else None.

  `path` is a directory holding albert_config.json and model.ckpt-*.index (the newest step wins;
  a `checkpoint` state file, if present, names the one to use), or a prefix `dir/model.ckpt-N`.
  """
  if os.path.isfile(path + ".index"):
    directory, prefix = os.path.dirname(path) or ".", path
  elif os.path.isdir(path):
    directory = path
    prefixes = [f[: -len(".index")] for f in glob.glob(os.path.join(path, "*.index"))]
    if not prefixes:
      return None
    state_file = os.path.join(path, "checkpoint")
    named = None
    if os.path.isfile(state_file):
      with open(state_file, encoding="utf-8") as f:
        m = re.search(r'^model_checkpoint_path:\s*"(.*)"', f.read(), re.M)
      if m:
        named = os.path.join(path, m.group(1)) if not os.path.isabs(m.group(1)) else m.group(1)
    if named is not None and named in prefixes:
      prefix = named
    else:
      prefix = max(prefixes, key=lambda p: (_checkpoint_step(p), p.endswith("best"), p))
  else:
    return None
  config = os.path.join(directory, "albert_config.json")
  if not os.path.isfile(config):
    raise FileNotFoundError(
      f"Found the TF checkpoint {prefix} but no albert_config.json next to it in {directory}"
    )
  return prefix, config


def read_checkpoint(prefix: str) -> dict[str, np.ndarray]:
  """{variable name: array} of an original checkpoint, optimizer slots left out."""
  tf = _tf()
  try:
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(reader.get_variable_to_shape_map())
    return {name: np.asarray(reader.get_tensor(name)) for name in names if not is_ignored(name)}
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError(
      f"Could not read the TF checkpoint {prefix} (.index/.data files): it is "
      f"corrupt, truncated or incomplete ({type(e).__name__}: {e})"
    ) from None


def write_checkpoint(directory: str, tensors: dict[str, np.ndarray], step: int = 0) -> str:
  """Write an original-format checkpoint `directory/model.ckpt-<step>`; returns the prefix."""
  tf = _tf()
  prefix = os.path.join(directory, f"model.ckpt-{step}")
  names = sorted(tensors)
  with tf.device("/cpu:0"):
    tf.raw_ops.SaveV2(
      prefix=prefix,
      tensor_names=names,
      shape_and_slices=[""] * len(names),
      tensors=[tf.constant(tensors[n]) for n in names],
    )
  # The state file that tf.train.latest_checkpoint reads (relative path: the directory can move).
  with open(os.path.join(directory, "checkpoint"), "w", encoding="utf-8") as f:
    f.write(
      f'model_checkpoint_path: "model.ckpt-{step}"\n'
      f'all_model_checkpoint_paths: "model.ckpt-{step}"\n'
    )
  return prefix


def original_config_dict(config: AlbertConfig) -> dict:
  """albert_config.json content as google-research/albert writes it."""
  if config.hidden_act not in _ORIGINAL_ACTIVATIONS:
    raise ValueError(
      f"hidden_act {config.hidden_act!r} has no name in the original ALBERT code "
      f"(it knows {sorted(set(_ORIGINAL_ACTIVATIONS.values()))}; its 'gelu' is "
      "the tanh approximation, our 'gelu_new'); export with format='hf' instead"
    )
  if config.layer_norm_eps != 1e-12:
    raise ValueError(
      f"layer_norm_eps {config.layer_norm_eps} cannot be expressed in the original "
      "format (its LayerNorm epsilon is fixed at 1e-12); export with format='hf'"
    )
  return {
    "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
    "hidden_act": _ORIGINAL_ACTIVATIONS[config.hidden_act],
    "hidden_dropout_prob": config.hidden_dropout_prob,
    "embedding_size": config.embedding_size,
    "hidden_size": config.hidden_size,
    "initializer_range": config.initializer_range,
    "intermediate_size": config.intermediate_size,
    "max_position_embeddings": config.max_position_embeddings,
    "num_attention_heads": config.num_attention_heads,
    "num_hidden_layers": config.num_hidden_layers,
    "num_hidden_groups": config.num_hidden_groups,
    "net_structure_type": 0,
    "gap_size": 0,
    "num_memory_blocks": 0,
    "inner_group_num": config.inner_group_num,
    "down_scale_factor": 1,
    "type_vocab_size": config.type_vocab_size,
    "vocab_size": config.vocab_size,
  }
