"""albert-flax: ALBERT (Lan et al.) in JAX/Flax.

    import albert_flax as af
    cfg = af.AlbertConfig.preset("base-v2")
    model = af.AlbertForPreTraining(cfg)
    variables = model.init(jax.random.key(0), input_ids)

See README.md and DESIGN.md for the rest of the public API.
"""

from albert_flax.config import AlbertConfig
from albert_flax.modeling import AlbertModelOutput, AlbertModule, validate_inputs
from albert_flax.heads import (
    AlbertForMaskedLM, AlbertForMultipleChoice, AlbertForPreTraining, AlbertForPreTrainingOutput,
    AlbertForQuestionAnswering, AlbertForSequenceClassification, AlbertForTokenClassification,
    AlbertModel, MaskedLMOutput, MultipleChoiceModelOutput, QuestionAnsweringModelOutput,
    SequenceClassifierOutput, TokenClassifierOutput, MODEL_CLASSES)


def __getattr__(name):
  # Parts that pull in heavier dependencies load on first use.
  if name == "AlbertTokenizer":
    from albert_flax import tokenization
    return tokenization.AlbertTokenizer
  if name == "train_tokenizer":
    from albert_flax import tokenizer_training
    return tokenizer_training.train_tokenizer
  if name in ("from_pretrained", "save_pretrained"):
    from albert_flax import checkpoints
    return getattr(checkpoints, name)
  raise AttributeError(f"module 'albert_flax' has no attribute {name!r}")


__version__ = "0.1.0"
