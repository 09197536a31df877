"""albert-flax: ALBERT (Lan et al.) in JAX/Flax.

    import albert_flax as af
    cfg = af.AlbertConfig.preset("base-v2")
    model = af.AlbertForPreTraining(cfg)
    variables = model.init(jax.random.key(0), input_ids)

See README.md for the rest of the public API. Where things are:

    config, modeling, heads      the model: AlbertConfig, the scanned backbone, every task model
    (layer_sharing, inputs, precision, sharding, flops, paper: its parts and figures)
    tokenization/                AlbertTokenizer, WordPieceTokenizer, load_tokenizer, training
    checkpoints/                 from_pretrained / save_pretrained in every format, model cards
    nnx, pipelines, export/      af.nnx models, af.pipeline, af.export and af.quantize
    workdir, paths               file names of workdirs and saved models; local or gs:// files
    train/                       the training machinery both programs share
"""

import importlib

__version__ = "0.1.0"  # first: modules that report it import it from here

from albert_flax.config import AlbertConfig
from albert_flax.heads import (
  MODEL_CLASSES,
  AlbertForMaskedLM,
  AlbertForMultipleChoice,
  AlbertForPreTraining,
  AlbertForPreTrainingOutput,
  AlbertForQuestionAnswering,
  AlbertForSequenceClassification,
  AlbertForTokenClassification,
  AlbertModel,
  MaskedLMOutput,
  MultipleChoiceModelOutput,
  QuestionAnsweringModelOutput,
  SequenceClassifierOutput,
  TokenClassifierOutput,
)
from albert_flax.modeling import AlbertModelOutput, AlbertModule, validate_inputs

# Parts that pull in heavier dependencies (sentencepiece, orbax, safetensors) load on first use:
# name -> the albert_flax submodule that defines it.
_LAZY = {
  "AlbertTokenizer": "tokenization",
  "WordPieceTokenizer": "tokenization",
  "load_tokenizer": "tokenization",
  "train_tokenizer": "tokenization",
  "train_wordpiece_vocab": "tokenization",
  "from_pretrained": "checkpoints",
  "save_pretrained": "checkpoints",
  "pipeline": "pipelines",
  "push_to_hub": "checkpoints",
  "export": "export",
  "quantize": "quantize_int8",
}
# Submodules reached as attributes (`af.nnx`), imported on first use.
_SUBMODULES = ("nnx",)

__all__ = [
  "AlbertConfig",
  "AlbertModelOutput",
  "AlbertModule",
  "validate_inputs",
  "AlbertForMaskedLM",
  "AlbertForMultipleChoice",
  "AlbertForPreTraining",
  "AlbertForPreTrainingOutput",
  "AlbertForQuestionAnswering",
  "AlbertForSequenceClassification",
  "AlbertForTokenClassification",
  "AlbertModel",
  "MaskedLMOutput",
  "MultipleChoiceModelOutput",
  "QuestionAnsweringModelOutput",
  "SequenceClassifierOutput",
  "TokenClassifierOutput",
  "MODEL_CLASSES",
  *_LAZY,
]


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"albert_flax.{name}")
  if name not in _LAZY:
    raise AttributeError(f"module 'albert_flax' has no attribute {name!r}")
  return getattr(importlib.import_module(f"albert_flax.{_LAZY[name]}"), name)
