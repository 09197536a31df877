"""Original TF1 checkpoints for the tests, written here: google-research/albert's variable names
for a transformers ALBERT's weights (spelled out name by name from its modeling.py), its
albert_config.json, and a TF1 Saver that writes them with the optimizer slots beside them."""

from __future__ import annotations

import os

import numpy as np


def original_variables(torch_model) -> dict[str, np.ndarray]:
  """{original name: array} of a transformers Albert* model (the pooler and the sentence-order
  head only when the model has them), kernels as TF stores them ([in, out])."""
  sd = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  c = torch_model.config
  v = {
    "bert/embeddings/word_embeddings": sd["albert.embeddings.word_embeddings.weight"],
    "bert/embeddings/position_embeddings": sd["albert.embeddings.position_embeddings.weight"],
    "bert/embeddings/token_type_embeddings": sd["albert.embeddings.token_type_embeddings.weight"],
    "bert/embeddings/LayerNorm/gamma": sd["albert.embeddings.LayerNorm.weight"],
    "bert/embeddings/LayerNorm/beta": sd["albert.embeddings.LayerNorm.bias"],
    "bert/encoder/embedding_hidden_mapping_in/kernel": sd[
      "albert.encoder.embedding_hidden_mapping_in.weight"
    ].T,
    "bert/encoder/embedding_hidden_mapping_in/bias": sd[
      "albert.encoder.embedding_hidden_mapping_in.bias"
    ],
    "cls/predictions/transform/dense/kernel": sd["predictions.dense.weight"].T,
    "cls/predictions/transform/dense/bias": sd["predictions.dense.bias"],
    "cls/predictions/transform/LayerNorm/gamma": sd["predictions.LayerNorm.weight"],
    "cls/predictions/transform/LayerNorm/beta": sd["predictions.LayerNorm.bias"],
    "cls/predictions/output_bias": sd["predictions.bias"],
  }
  if "albert.pooler.weight" in sd:
    v["bert/pooler/dense/kernel"] = sd["albert.pooler.weight"].T
    v["bert/pooler/dense/bias"] = sd["albert.pooler.bias"]
  if "sop_classifier.classifier.weight" in sd:
    v["cls/seq_relationship/output_weights"] = sd["sop_classifier.classifier.weight"]  # [2, H]
    v["cls/seq_relationship/output_bias"] = sd["sop_classifier.classifier.bias"]
  for g in range(c.num_hidden_groups):
    for i in range(c.inner_group_num):
      src = f"albert.encoder.albert_layer_groups.{g}.albert_layers.{i}."
      dst = f"bert/encoder/transformer/group_{g}/inner_group_{i}/"
      for ours, theirs in (
        ("attention.query", "attention_1/self/query"),
        ("attention.key", "attention_1/self/key"),
        ("attention.value", "attention_1/self/value"),
        ("attention.dense", "attention_1/output/dense"),
        ("ffn", "ffn_1/intermediate/dense"),
        ("ffn_output", "ffn_1/intermediate/output/dense"),
      ):
        v[dst + theirs + "/kernel"] = sd[src + ours + ".weight"].T
        v[dst + theirs + "/bias"] = sd[src + ours + ".bias"]
      for ours, theirs in (
        ("attention.LayerNorm", "LayerNorm"),
        ("full_layer_layer_norm", "LayerNorm_1"),
      ):
        v[dst + theirs + "/gamma"] = sd[src + ours + ".weight"]
        v[dst + theirs + "/beta"] = sd[src + ours + ".bias"]
  return v


def original_config(config, hidden_act: str) -> dict:
  """albert_config.json as google-research/albert writes it, for a transformers AlbertConfig
  (`hidden_act` in the original's spelling: "gelu" is its tanh form, "relu" in the zh models)."""
  return {
    "attention_probs_dropout_prob": 0.0,
    "hidden_act": hidden_act,
    "hidden_dropout_prob": 0.0,
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


def save_tf1(
  directory,
  prefix: str,
  variables: dict[str, np.ndarray],
  slot: str = "adam",
  global_step: int = 1000,
) -> None:
  """Write `variables` (original names) as a TF1 Saver does, with the optimizer's slots beside
  them (`slot`: "adam" as google-research's optimizers name them, "lamb" as albert_zh's LAMB) and
  global_step, as the original training scripts leave a checkpoint."""
  import tensorflow as tf

  slots = {}
  for name, value in variables.items():
    slots[f"{name}/{slot}_m"] = np.zeros_like(value)
    slots[f"{name}/{slot}_v"] = np.ones_like(value)
  graph = tf.Graph()
  with graph.as_default():
    tf_vars = {
      name: tf.compat.v1.Variable(value.astype(np.float32), name=f"v{i}")
      for i, (name, value) in enumerate({**variables, **slots}.items())
    }
    tf_vars["global_step"] = tf.compat.v1.Variable(np.int64(global_step), name="global_step")
    saver = tf.compat.v1.train.Saver(var_list=tf_vars)
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      saver.save(session, os.path.join(directory, prefix), write_meta_graph=False)
