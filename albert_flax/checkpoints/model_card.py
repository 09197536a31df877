"""Model cards (README.md beside a saved model) and uploading saved models to the Hugging Face Hub.

    af.save_pretrained("out/", model, params, tokenizer="spiece.model")  # writes the card
    af.push_to_hub("me/albert-tiny-sst2", "out/")       # uploads the directory

The card states what can be read off the checkpoint: architecture, exact parameter counts (total,
embeddings, the shared layers, heads), the vocabulary; when the model is saved inside a training
workdir (a pretraining workdir, or a fine-tuning workdir's model/ folder) also the training data
(train_config.json) and the last metrics of each split (metrics.jsonl). Then intended use and
limits. A README.md that albert-flax did not write is left alone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from etils import epath

from albert_flax import __version__, paths
from albert_flax import workdir as layout
from albert_flax.config import AlbertConfig

logger = logging.getLogger(__name__)

CARD_FILE = layout.MODEL_CARD_FILE
# The first line of the card's body: how we recognize a card we wrote (and may overwrite).
_MARKER = "<!-- model card written by albert-flax -->"

_PIPELINE_TAGS = {
  "AlbertModel": "feature-extraction",
  "AlbertForPreTraining": "fill-mask",
  "AlbertForMaskedLM": "fill-mask",
  "AlbertForSequenceClassification": "text-classification",
  "AlbertForMultipleChoice": "multiple-choice",
  "AlbertForTokenClassification": "token-classification",
  "AlbertForQuestionAnswering": "question-answering",
}

# What the layers share (AlbertConfig.cross_layer_sharing), in the card's words.
_SHARING = {
  "all": "The layers are shared: one group of `inner_group_num` layer(s) per `num_hidden_groups`,"
  " applied `num_hidden_layers` times, so depth costs compute, not parameters.",
  "attention": "The attention block (and its LayerNorm) is shared by all `num_hidden_layers`"
  " layers; each layer has its own FFN (the ALBERT paper's shared-attention variant).",
  "ffn": "The FFN block (and its LayerNorm) is shared by all `num_hidden_layers` layers; each"
  " layer has its own attention (the ALBERT paper's shared-FFN variant).",
  "none": "Nothing is shared: each of the `num_hidden_layers` layers has its own weights (the"
  " ALBERT paper's not-shared variant; with embedding_size = hidden_size, BERT's shape).",
}


def parameter_counts(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
  """{"total", "embeddings", "encoder", "pooler", "heads"} element counts of a flat
  {'/'-joined path: shape} parameter tree ("encoder" includes the E->H projection)."""
  counts = {"total": 0, "embeddings": 0, "encoder": 0, "pooler": 0, "heads": 0}
  for path, shape in shapes.items():
    n = int(np.prod(shape, dtype=np.int64))
    counts["total"] += n
    part = path.split("/")[1] if path.startswith("albert/") else None
    counts[part if part in ("embeddings", "encoder", "pooler") else "heads"] += n
  return counts


def _training_dir(path: epath.Path) -> epath.Path | None:
  """The training workdir `path` was saved in (itself or its parent holds metrics.jsonl)."""
  for candidate in (path, path.parent):
    if (candidate / layout.METRICS_FILE).is_file():
      return candidate
  return None


def final_metrics(metrics_file: str | os.PathLike) -> dict[str, dict[str, Any]]:
  """The last row of each split ("train" for rows without one) of a metrics.jsonl (local or
  gs://...)."""
  last: dict[str, dict[str, Any]] = {}
  with paths.open_text(metrics_file) as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        last[row.pop("split", "train")] = row
  return last


def _training_data(train_config: Mapping[str, Any]) -> list[str]:
  """What the program's config says about its data (pretraining keys, fine-tuning keys)."""
  data = train_config.get("data") or {}
  lines = []
  if data.get("tfds_name"):
    lines.append(f"tensorflow-datasets `{data['tfds_name']}` split `{data.get('tfds_split')}`")
  elif data.get("train_files") == "builtin":
    lines.append("the built-in corpus (the Python standard library's docstrings)")
  elif data.get("train_files"):
    lines.append(f"text files `{data['train_files']}`")
  for key in ("family", "task", "data_dir"):
    if train_config.get(key):
      lines.append(f"{key}: `{train_config[key]}`")
  return lines


def _vocabulary(directory: epath.Path, config: AlbertConfig) -> str:
  spiece = directory / layout.TOKENIZER_FILE
  if spiece.is_file():
    import sentencepiece as spm

    try:
      pieces = spm.SentencePieceProcessor(model_proto=spiece.read_bytes()).get_piece_size()
    except Exception as e:  # the card describes; it never stops a save
      logger.warning("model card: could not read %s (%s)", spiece, e)
      return f"SentencePiece model `{layout.TOKENIZER_FILE}` (unreadable: {type(e).__name__})."
    return f"SentencePiece model `{layout.TOKENIZER_FILE}` with {pieces:,} pieces."
  vocab_txt = directory / layout.WORDPIECE_VOCAB_FILE
  if vocab_txt.is_file():
    with paths.open_text(vocab_txt) as f:
      words = sum(1 for line in f if line.strip())
    return f"WordPiece vocabulary `vocab.txt` with {words:,} tokens."
  return (
    f"No tokenizer was saved with the weights; the embedding table has {config.vocab_size:,} "
    "rows and must be used with the tokenizer the model was trained with."
  )


def build_model_card(
  directory: str | os.PathLike,
  config: AlbertConfig,
  architecture: str,
  shapes: Mapping[str, tuple[int, ...]],
  format: str,
) -> str:
  """The card's Markdown for a model saved in `directory` (see the module docstring).

  Args:
    directory: the saved model's folder (read for the tokenizer and a surrounding workdir).
    config: the model's AlbertConfig.
    architecture: the model class name ("AlbertForSequenceClassification").
    shapes: {'/'-joined parameter path: shape} of the saved parameters.
    format: the save format ("orbax", "hf", "tf").
  """
  directory = paths.path(directory)
  counts = parameter_counts(shapes)
  tag = _PIPELINE_TAGS.get(architecture, "feature-extraction")
  lines = [
    "---",
    "library_name: albert-flax",
    f"pipeline_tag: {tag}",
    "tags: [albert, jax, flax]",
    "---",
    _MARKER,
    f"# {directory.name}",
    "",
    f"ALBERT `{architecture}` saved by albert-flax {__version__} in the `{format}` format.",
    "",
    "## Architecture",
    "",
    "| field | value |",
    "| --- | --- |",
  ]
  lines += _architecture_rows(config, architecture)
  lines += ["", _SHARING[config.cross_layer_sharing], ""]
  lines += [
    "## Parameters",
    "",
    "| part | parameters |",
    "| --- | --- |",
  ]
  for part in ("total", "embeddings", "encoder", "pooler", "heads"):
    lines.append(f"| {part} | {counts[part]:,} |")
  lines += ["", "## Vocabulary", "", _vocabulary(directory, config), ""]

  lines += _training_section(directory)

  lines += [
    "## Intended use and limits",
    "",
    f"Use it for {tag.replace('-', ' ')} on text like its training data, in the language(s) of "
    "its vocabulary, or as a starting point for fine-tuning. Inputs are at most "
    f"{config.max_position_embeddings} tokens (longer text must be truncated or split). ALBERT "
    "learns the biases of its training text; its outputs are not facts and were not evaluated "
    "for fairness or for high-stakes decisions. Scores of a fine-tuned head are those of its "
    "task's data and do not carry over to other domains.",
    "",
    "## How to load",
    "",
    "```python",
    "import albert_flax as af",
    f'model, params = af.from_pretrained("PATH_OR_HUB_ID", af.{architecture})',
    "```",
    "",
  ]
  return "\n".join(lines)


# The config fields the card's architecture table shows, in its order.
_CARD_FIELDS = (
  "vocab_size",
  "embedding_size",
  "hidden_size",
  "num_hidden_layers",
  "num_hidden_groups",
  "inner_group_num",
  "num_attention_heads",
  "intermediate_size",
  "hidden_act",
  "max_position_embeddings",
  "type_vocab_size",
  "cross_layer_sharing",
  "param_dtype",
)


def _architecture_rows(config: AlbertConfig, architecture: str) -> list[str]:
  """The architecture table's rows: the config fields, and a classifier's labels."""
  rows = [f"| {field} | {getattr(config, field)} |" for field in _CARD_FIELDS]
  if architecture in ("AlbertForSequenceClassification", "AlbertForTokenClassification"):
    names = config.label_names or tuple(f"LABEL_{i}" for i in range(config.num_labels))
    rows.append(f"| labels | {config.num_labels}: {', '.join(names)} |")
  return rows


def _training_section(directory: epath.Path) -> list[str]:
  """'## Training' (data, final metrics) when the model sits in a workdir, else nothing."""
  training = _training_dir(directory)
  if training is None:
    return []
  lines = ["## Training", ""]
  train_config_file = training / layout.TRAIN_CONFIG_FILE
  if train_config_file.is_file():
    data = _training_data(paths.read_json(train_config_file))
    lines += [f"Training data: {', '.join(data)}." if data else "", ""]
  for split, row in final_metrics(training / layout.METRICS_FILE).items():
    metrics = ", ".join(f"{k} = {v}" for k, v in row.items() if k != "step")
    lines.append(f"- {split} (step {row.get('step')}): {metrics}")
  lines.append("")
  return lines


def write_model_card(
  directory: str | os.PathLike,
  config: AlbertConfig,
  architecture: str,
  shapes: Mapping[str, tuple[int, ...]],
  format: str,
) -> str | None:
  """Write `directory`/README.md (local or gs://...; see `build_model_card`); returns its path,
  or None when a README.md albert-flax did not write is already there (it is kept)."""
  path = paths.path(directory) / CARD_FILE
  if path.is_file() and _MARKER not in paths.read_text(path):
    logger.info("save_pretrained: keeping the existing %s (not written by albert-flax)", path)
    return None
  try:
    text = build_model_card(directory, config, architecture, shapes, format)
  except (OSError, ValueError) as e:  # e.g. a malformed metrics.jsonl: the save itself stands
    logger.warning("save_pretrained: no model card for %s (%s: %s)", directory, type(e).__name__, e)
    return None
  paths.write_text(path, text)
  return os.fspath(path)


def push_to_hub(
  repo_id: str,
  path: str | os.PathLike,
  *,
  token: str | None = None,
  private: bool | None = None,
  revision: str | None = None,
  commit_message: str = "Upload ALBERT model (albert-flax)",
  endpoint: str | None = None,
) -> str:
  """Upload a directory written by `save_pretrained` to the Hugging Face Hub repo `repo_id`.

  Creates the model repository if needed (`private` applies then) and uploads every file of
  `path` in one commit. Returns the commit's URL.

  Raises:
    FileNotFoundError: `path` is not a saved model (no config.json or albert_config.json).
    OSError: offline (HF_HUB_OFFLINE set) or the Hub could not be reached / refused the upload;
      the message says which and what to do.
  """
  import huggingface_hub
  from huggingface_hub import constants

  directory = os.fspath(path)
  if not any(
    os.path.isfile(os.path.join(directory, name))
    for name in (layout.CONFIG_FILE, "albert_config.json")
  ):
    raise FileNotFoundError(
      f"{directory} is not a saved model (no {layout.CONFIG_FILE}): write it with "
      "af.save_pretrained first"
    )
  offline = paths.hub_offline()
  if offline:
    raise OSError(
      f"Cannot push {directory} to {repo_id!r}: HF_HUB_OFFLINE is set. Unset it and make sure "
      "the Hugging Face Hub is reachable (and that you are logged in: `hf auth login`)."
    )
  api = huggingface_hub.HfApi(endpoint=endpoint, token=token)
  try:
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
      repo_id=repo_id,
      folder_path=directory,
      repo_type="model",
      revision=revision,
      commit_message=commit_message,
    )
  except Exception as e:  # network down, DNS, auth, permissions: all mean "not uploaded"
    raise OSError(
      f"Could not push {directory} to {repo_id!r} on {endpoint or constants.ENDPOINT} "
      f"({type(e).__name__}: {e}). Check your network, the repo id and your token "
      "(`hf auth login` or token=...)."
    ) from None
  return str(getattr(info, "commit_url", info))
