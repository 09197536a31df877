"""google-research/albert TF1 checkpoint names <-> this package's parameter tree, and TF files.

The original code (modeling.py, run_pretraining.py, classifier_utils.py, squad_utils.py) names its
variables as below (the table is `name_maps.GOOGLE_TF_NAMES`);
`transformers.load_tf_weights_in_albert` reads the same names. TF kernels are [in, out] like
flax's, so only the `output_weights` matrices ([out, in]) are transposed.

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

Google's Chinese models (albert_{base,large,xlarge,xxlarge}_zh: albert_config.json, often with
"hidden_act": "relu", vocab_chinese.txt, model.ckpt-best) use these same names.

brightmart/albert_zh's own checkpoints (albert_config_<size>.json, albert_model.ckpt, vocab.txt)
name the layer as BERT does (`bert/encoder/layer_shared/attention/self/query`, ...; the table is
`name_maps.BRIGHTMART_TF_NAMES`) and factorize the embeddings differently: the word table [V, E]
is projected by `bert/embeddings/word_embeddings_2` [E, H] *before* the H-wide position and
token-type embeddings are added and LayerNorm runs over H, and the MLM head projects back with the
transpose of that matrix before the tied decoder. That model is exactly ours with E = H, the word
table W P [V, H] and an identity `embedding_hidden_mapping_in` (the decoder then computes
h (W P)^T = (h P^T) W^T, as theirs): `read_original` builds that, at the cost of a V x H table.
Their pre-LN variant (`"ln_type": "preln"`, their xxlarge) is another architecture and is refused.

Optimizer slots (`*/adam_m`, `*/lamb_v`, ...) and `global_step` are not model weights: skipped.
TensorFlow is imported only here, lazily (the `tf` extra: `install_hints.pip_install("tf")`).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator

import numpy as np
from etils import epath

from albert_flax import paths
from albert_flax.checkpoints.name_maps import (
  BRIGHTMART_PROJECTION,
  BRIGHTMART_TF_NAMES,
  GOOGLE_TF_NAMES,
)
from albert_flax.config import AlbertConfig
from albert_flax.install_hints import pip_install

# Adam's / albert_zh's LAMB's slots (`<variable>/adam_m`, `<variable>/lamb_m`, ...).
_OPTIMIZER_SLOTS = (
  "adam_m",
  "adam_v",
  "lamb_m",
  "lamb_v",
  "AdamWeightDecayOptimizer",
  "AdamWeightDecayOptimizer_1",
)
# The original code's activations (modeling.get_activation); its "gelu" is the tanh approximation.
_ORIGINAL_ACTIVATIONS = {
  "gelu_new": "gelu",
  "gelu_pytorch_tanh": "gelu",
  "relu": "relu",
  "tanh": "tanh",
  "linear": "linear",
}


def is_ignored(name: str) -> bool:
  """Optimizer slots and step counters: not model weights."""
  parts = name.split("/")
  return name == "global_step" or any(p in _OPTIMIZER_SLOTS for p in parts)


def path_to_tf_name(path: str) -> tuple[str, bool]:
  """Our '/'-joined path -> (original variable name, transpose?)."""
  mapped = GOOGLE_TF_NAMES.to_theirs(path)
  if mapped is not None:
    return mapped
  raise ValueError(f"Parameter {path!r} has no name in the original TF checkpoint format")


# ----------------------------------------------------------------------------- files


def _tf():
  try:
    import tensorflow as tf
  except ImportError:
    raise ImportError(
      "Reading or writing original (TF1) ALBERT checkpoints needs TensorFlow: "
      f"`{pip_install('tf')}`"
    ) from None
  return tf


def require_tensorflow() -> None:
  """Raise the ImportError (with the install command) when TensorFlow is missing: callers check
  before they write anything, so a failed export leaves no files behind."""
  _tf()


@contextlib.contextmanager
def _local_prefix(prefix: str, write: bool = False) -> Iterator[str]:
  """A local prefix for TensorFlow's checkpoint reader / writer. A remote checkpoint's files are
  copied through a temporary directory (downloaded first to read, uploaded after writing): TF
  would reach gs:// through tf.io.gfile, another path library, which cannot be pointed at
  anything but Google's endpoint (albert_flax.paths)."""
  if paths.is_local(prefix):
    yield prefix
    return
  remote = paths.path(prefix)
  with tempfile.TemporaryDirectory() as tmp:
    local = epath.Path(tmp)
    if not write:
      for f in remote.parent.glob(remote.name + ".*"):
        (local / f.name).write_bytes(f.read_bytes())
    yield os.fspath(local / remote.name)
    if write:
      for f in local.iterdir():
        (remote.parent / f.name).write_bytes(f.read_bytes())


def read_checkpoint(prefix: str) -> dict[str, np.ndarray]:
  """{variable name: array} of an original checkpoint (local or gs://...), optimizer slots left
  out."""
  tf = _tf()
  try:
    with _local_prefix(prefix) as local_prefix:
      reader = tf.train.load_checkpoint(local_prefix)
      names = sorted(reader.get_variable_to_shape_map())
      return {name: np.asarray(reader.get_tensor(name)) for name in names if not is_ignored(name)}
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError(
      f"Could not read the TF checkpoint {prefix} (.index/.data files): it is "
      f"corrupt, truncated or incomplete ({type(e).__name__}: {e})"
    ) from None


def read_original(
  prefix: str, config_path: str
) -> tuple[AlbertConfig, dict[str, tuple[str, np.ndarray, bool]], list[tuple[str, tuple]]]:
  """A TF1 checkpoint of either layout (Google's, albert_zh's) in our parameter paths.

  Returns (config, {our path: (variable name, array in our layout, transposed?)}, [(unknown
  variable name, shape)]). albert_zh's embedding projection is folded in (see the module
  docstring), and the config widened to E = H to match.
  """
  config = AlbertConfig.from_json_file(config_path)
  state = read_checkpoint(prefix)
  state = {(n[len("module/") :] if n.startswith("module/") else n): a for n, a in state.items()}
  if not is_brightmart(state):
    tensors, unknown = GOOGLE_TF_NAMES.rename(state)
    return config, tensors, unknown
  ln_type = paths.read_json(config_path).get("ln_type") or "postln"
  if ln_type != "postln":
    raise ValueError(
      f"{config_path} has \"ln_type\": {ln_type!r}: albert_zh's pre-LayerNorm transformer is "
      "a different architecture from ALBERT's (post-LN), which is all this package builds"
    )
  projection = state.get(BRIGHTMART_PROJECTION)
  tensors, unknown = BRIGHTMART_TF_NAMES.rename(state, ignore=[BRIGHTMART_PROJECTION])
  unshared = {int(m.group(1)) for n in state if (m := re.match(r"bert/encoder/layer_(\d+)/", n))}
  if unshared:  # one layer per step (share_parameter_across_layers=False): G = L groups
    config = config.replace(num_hidden_groups=config.num_hidden_layers, inner_group_num=1)
  word_path = "albert/embeddings/word_embeddings/embedding"
  if projection is None or word_path not in tensors:
    raise ValueError(
      f"{prefix} names its layers as albert_zh does but lacks {BRIGHTMART_PROJECTION} or "
      "bert/embeddings/word_embeddings: incomplete checkpoint"
    )
  name, word, _ = tensors[word_path]
  if projection.shape != (word.shape[1], config.hidden_size):
    raise ValueError(
      f"{BRIGHTMART_PROJECTION}: expected shape {[word.shape[1], config.hidden_size]} "
      f"(embedding_size, hidden_size), found {list(projection.shape)}"
    )
  folded = (word.astype(np.float64) @ projection.astype(np.float64)).astype(word.dtype)
  tensors[word_path] = (f"{name} @ {BRIGHTMART_PROJECTION}", folded, False)
  identity = f"identity (albert_zh adds positions after {BRIGHTMART_PROJECTION})"
  hidden = config.hidden_size
  tensors["albert/encoder/embedding_hidden_mapping_in/kernel"] = (
    identity,
    np.eye(hidden, dtype=word.dtype),
    False,
  )
  tensors["albert/encoder/embedding_hidden_mapping_in/bias"] = (
    identity,
    np.zeros(hidden, word.dtype),
    False,
  )
  return config.replace(embedding_size=hidden), tensors, unknown


def is_brightmart(state: dict[str, np.ndarray]) -> bool:
  """Whether variable names are albert_zh's own (BERT-style layer scopes, projection table)."""
  return BRIGHTMART_PROJECTION in state or any(
    re.match(r"bert/encoder/layer_(shared|\d+)/", n) for n in state
  )


def write_checkpoint(
  directory: str | os.PathLike, tensors: dict[str, np.ndarray], step: int = 0
) -> str:
  """Write an original-format checkpoint `directory/model.ckpt-<step>` (local or gs://...);
  returns the prefix."""
  tf = _tf()
  prefix = os.fspath(paths.path(directory) / f"model.ckpt-{step}")
  names = sorted(tensors)
  with _local_prefix(prefix, write=True) as local_prefix, tf.device("/cpu:0"):
    tf.raw_ops.SaveV2(
      prefix=local_prefix,
      tensor_names=names,
      shape_and_slices=[""] * len(names),
      tensors=[tf.constant(tensors[n]) for n in names],
    )
  # The state file that tf.train.latest_checkpoint reads (relative path: the directory can move).
  paths.write_text(
    paths.path(directory) / "checkpoint",
    f'model_checkpoint_path: "model.ckpt-{step}"\n'
    f'all_model_checkpoint_paths: "model.ckpt-{step}"\n',
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
