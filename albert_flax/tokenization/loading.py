"""`load_tokenizer(path_or_hub_id)`: the tokenizer a checkpoint goes with.

Looked for in the checkpoint's directory (a saved model, a pretraining workdir, a fine-tuning
workdir's model/, a transformers directory, an original TF release; for a TF prefix such as
`dir/model.ckpt-0`, its directory), or in a Hugging Face Hub repository:

  tokenizer_config.json   its "tokenizer_class" decides: AlbertTokenizer(Fast) -> SentencePiece,
                          BertTokenizer(Fast) -> WordPiece; its do_lower_case, keep_accents,
                          remove_space, strip_accents, tokenize_chinese_chars are passed on
  spiece.model            SentencePiece (transformers' name; the original English release calls
                          it 30k-clean.model)
  vocab.txt               WordPiece (transformers' albert_chinese_*, brightmart's albert_zh; the
                          original Chinese release calls it vocab_chinese.txt)

Without a tokenizer_config.json a SentencePiece model wins over a vocabulary. A file path loads
that file: *.model as SentencePiece, anything else as a WordPiece vocabulary.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from etils import epath

from albert_flax import paths, workdir
from albert_flax.tokenization.sentencepiece_tokenizer import AlbertTokenizer
from albert_flax.tokenization.wordpiece import WordPieceTokenizer
from albert_flax.workdir import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, WORDPIECE_VOCAB_FILE

logger = logging.getLogger(__name__)

# Ours (transformers' names) first, then the original TF releases'.
SENTENCEPIECE_FILES = (TOKENIZER_FILE, "30k-clean.model")
WORDPIECE_FILES = (WORDPIECE_VOCAB_FILE, "vocab_chinese.txt")
_CLASSES = {
  "AlbertTokenizer": AlbertTokenizer,
  "AlbertTokenizerFast": AlbertTokenizer,
  "BertTokenizer": WordPieceTokenizer,
  "BertTokenizerFast": WordPieceTokenizer,
}
# tokenizer_config.json keys each tokenizer takes.
_SETTINGS = {
  AlbertTokenizer: ("do_lower_case", "remove_space", "keep_accents"),
  WordPieceTokenizer: ("do_lower_case", "strip_accents", "tokenize_chinese_chars"),
}


def load_tokenizer(
  path_or_hub_id: str | os.PathLike, **kwargs: Any
) -> AlbertTokenizer | WordPieceTokenizer:
  """The tokenizer of a checkpoint (see the module docstring for where it is looked for).

  `kwargs` (do_lower_case=..., ...) override what tokenizer_config.json says.
  """
  path = os.fspath(path_or_hub_id)
  given = paths.path(path)  # local or gs://...
  if given.is_file():
    cls = AlbertTokenizer if given.suffix == ".model" else WordPieceTokenizer
    return cls(given, **kwargs)
  if given.is_dir():
    model_dir = given / workdir.MODEL_DIR
    if model_dir.is_dir() and not _has_tokenizer(given):  # a fine-tuning workdir: its model's
      return _from_directory(model_dir, kwargs)
    return _from_directory(given, kwargs)
  if given.with_name(given.name + ".index").is_file():  # a TF checkpoint prefix (dir/model.ckpt-0)
    return _from_directory(given.parent, kwargs)
  if given.exists() or not paths.is_local(path) or os.path.isabs(path) or path.startswith("."):
    raise FileNotFoundError(f"No tokenizer at {path}: not a file, directory or TF checkpoint")
  if re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?", path) and ".." not in path:
    return _from_directory(epath.Path(_download(path)), kwargs)
  raise FileNotFoundError(f"No such file or directory: {path}")


def _from_directory(directory: epath.Path, overrides: dict[str, Any]) -> Any:
  config: dict[str, Any] = {}
  config_path = directory / TOKENIZER_CONFIG_FILE
  if config_path.is_file():
    config = paths.read_json(config_path)
  found = {
    AlbertTokenizer: _first_file(directory, SENTENCEPIECE_FILES),
    WordPieceTokenizer: _first_file(directory, WORDPIECE_FILES),
  }
  name = config.get("tokenizer_class")
  if name is not None and name not in _CLASSES:
    raise ValueError(
      f"{config_path} names tokenizer_class {name!r}; ALBERT checkpoints use one of "
      f"{sorted(_CLASSES)}"
    )
  if name is not None:
    cls = _CLASSES[name]
  else:
    cls = AlbertTokenizer if found[AlbertTokenizer] else WordPieceTokenizer
  if found[cls] is None:
    wanted = SENTENCEPIECE_FILES if cls is AlbertTokenizer else WORDPIECE_FILES
    raise FileNotFoundError(
      f"No tokenizer in {directory}: expected one of {list(SENTENCEPIECE_FILES + WORDPIECE_FILES)}"
      if name is None
      else f"{config_path} names {name} but {directory} holds none of {list(wanted)}"
    )
  settings = {k: config[k] for k in _SETTINGS[cls] if k in config}
  settings.update(overrides)
  return cls(found[cls], **settings)


def _has_tokenizer(directory: epath.Path) -> bool:
  return _first_file(directory, SENTENCEPIECE_FILES + WORDPIECE_FILES) is not None


def _first_file(directory: epath.Path, names: tuple[str, ...]) -> epath.Path | None:
  for name in names:
    if (directory / name).is_file():
      return directory / name
  return None


def _download(repo_id: str) -> str:
  """The tokenizer files of a Hub repository (cached); offline or failing -> clear OSError."""
  import huggingface_hub

  offline = paths.hub_offline()
  try:
    return huggingface_hub.snapshot_download(
      repo_id,
      allow_patterns=[TOKENIZER_CONFIG_FILE, *SENTENCEPIECE_FILES, *WORDPIECE_FILES],
      local_files_only=offline,
    )
  except Exception as e:  # offline, unknown repo, no network: all mean "could not get it"
    hint = (
      " HF_HUB_OFFLINE is set and the repository is not in the local Hugging Face cache."
      if offline
      else " Check the id and your network, or pass a local directory."
    )
    raise OSError(
      f"{repo_id!r} is not a local path, and getting its tokenizer from the Hugging Face Hub "
      f"failed ({type(e).__name__}: {e}).{hint}"
    ) from None
