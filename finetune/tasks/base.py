"""The contract between a task (GLUE, SQuAD, RACE, NER) and the generic trainer in `train.py`.

A task reads its data (original files under `config.data_dir`, or tensorflow-datasets), turns it
into `Features` (numpy arrays), says which model head it trains and how (its loss as `(sum,
weight)` stats), and scores / writes the model's outputs on its evaluation sets.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from etils import epath

from albert_flax.train.batch_spec import LENGTH, ROWS, BatchField
from albert_flax.train.losses import Stat
from finetune.data import MODEL_INPUTS, DataError, Features


@dataclasses.dataclass
class EvalSet:
  """One split to predict on.

  name: "dev", "dev_matched", "test", "ax", ... (metric keys are "<name>/<metric>").
  features: model inputs [N, ...] (and targets when labeled).
  labeled: whether `score` can compute metrics (test sets usually are not).
  meta: whatever the task needs to turn outputs into predictions (examples, span maps, ...).
  """

  name: str
  features: Features
  labeled: bool
  meta: Any = None


class Task(abc.ABC):
  """Base class of the fine-tuning tasks."""

  model_class: type[nn.Module]
  # `head_outputs` with one value per position ([batch, seq, ...]): length-bucketed prediction
  # pads them back to max_seq_length (padding positions get a very low score).
  sequence_outputs: tuple[str, ...] = ()
  # Model inputs are [batch, *input_dims, seq]: one sequence a row, or (RACE) (choices,).
  input_dims: tuple[int, ...] = ()

  def __init__(self, config: ml_collections.ConfigDict, tokenizer: Any):
    self.config = config
    self.tokenizer = tokenizer

  # ------------------------------------------------------------------ model and loss
  @abc.abstractmethod
  def model_overrides(self) -> dict[str, Any]:
    """Head settings for `af.from_pretrained` (num_labels, problem_type, label_names)."""

  @abc.abstractmethod
  def stats(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, Stat]:
    """The loss terms of one batch as (sum, weight) pairs (traced inside jit). `batch` holds
    the features plus "weights" [batch] (0 on padding rows)."""

  @abc.abstractmethod
  def loss_weights(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Denominator of each loss term over the whole batch (see `albert_flax.train.training`)."""

  @abc.abstractmethod
  def head_outputs(self, outputs: Any) -> dict[str, jax.Array]:
    """The model outputs `score` needs, each [batch, ...] (e.g. {"logits": ...})."""

  def batch_spec(self, batch_size: int, seq_len: int) -> dict[str, BatchField]:
    """The train step's batch: model inputs [batch, *input_dims, seq] int32, the targets
    (`target_spec`) and "weights" [batch] float32 (0 on padding rows)."""
    dims = (batch_size, *self.input_dims, seq_len)
    inputs = BatchField(dims, np.int32, (ROWS, *[None] * len(self.input_dims), LENGTH))
    spec = {name: inputs for name in MODEL_INPUTS}
    spec.update(self.target_spec(batch_size, seq_len))
    spec["weights"] = BatchField((batch_size,), np.float32, (ROWS,))
    return spec

  def target_spec(self, batch_size: int, seq_len: int) -> dict[str, BatchField]:
    """The targets of a training batch: by default one label [batch] a row, int32 (a class) or
    float32 (problem_type "regression")."""
    del seq_len
    regression = self.model_overrides().get("problem_type") == "regression"
    return {"labels": BatchField((batch_size,), np.float32 if regression else np.int32, (ROWS,))}

  # ------------------------------------------------------------------ data
  @abc.abstractmethod
  def train_features(self) -> Features:
    """Training features: model inputs and targets, [N, ...] each."""

  @abc.abstractmethod
  def eval_sets(self, final: bool) -> list[EvalSet]:
    """Sets evaluated during training (final=False: the labeled dev sets) or at the end
    (final=True: also test sets, labeled or not)."""

  # ------------------------------------------------------------------ scoring
  @property
  @abc.abstractmethod
  def best_metric(self) -> str:
    """The metric ("<set>/<name>", higher is better) that picks the best checkpoint."""

  @abc.abstractmethod
  def score(
    self, eval_set: EvalSet, outputs: Mapping[str, np.ndarray]
  ) -> tuple[dict[str, float], Any]:
    """(metrics, predictions) of a set from `head_outputs` gathered over it ([N, ...]).
    Metrics are empty for unlabeled sets."""

  @abc.abstractmethod
  def write_predictions(self, eval_set: EvalSet, predictions: Any, directory: str) -> list[str]:
    """Write the predictions (atomically) under `directory`; returns the paths written."""

  # ------------------------------------------------------------------ helpers
  def _limit(self, items: list, kind: str) -> list:
    """The first config.max_{kind}_examples items (0 = all): quick runs and tests."""
    limit = int(self.config.get(f"max_{kind}_examples", 0) or 0)
    return items[:limit] if limit > 0 else items

  def data_path(self, *parts: str) -> str:
    """A file under config.data_dir (local, or a bucket URL: gs://...)."""
    return str(epath.Path(self.config.data_dir).joinpath(*parts))

  def is_data_file(self, *parts: str) -> bool:
    return epath.Path(self.data_path(*parts)).is_file()


def use_tfds(config: ml_collections.ConfigDict) -> bool:
  """Original files when config.data_dir is set, tensorflow-datasets otherwise."""
  return not config.get("data_dir")


def load_tfds(name: str, split: str, config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
  """All examples of a tfds split as python dicts (bytes decoded to str).

  tensorflow-datasets is imported here only: runs on original files never need it.
  """
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
      f"reading {name!r} from tensorflow-datasets needs the package "
      "tensorflow-datasets; or pass --config.data_dir with the original files"
    ) from e
  kwargs = {}
  if config.get("tfds_data_dir"):
    kwargs["data_dir"] = config.tfds_data_dir
  download = bool(config.get("tfds_download", True))
  try:
    dataset = tfds.load(name, split=split, download=download, **kwargs)
  except Exception as e:  # not prepared and not downloadable (offline), an unknown name, ...
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    raise DataError(
      None,
      None,
      f"no data: --config.data_dir is empty, and tensorflow-datasets could not give "
      f"{name}[{split}] ({type(e).__name__}: {first}). Pass --config.data_dir with the task's "
      "original files (finetune/README.md lists the formats)"
      + ("" if download else ", or allow --config.tfds_download=True (needs the network)"),
    ) from e
  return [_decode(example) for example in tfds.as_numpy(dataset)]


def _decode(value: Any) -> Any:
  if hasattr(value, "to_list"):  # tf.RaggedTensor (RACE's options): tfds.as_numpy leaves it as-is
    return _decode(value.to_list())
  if isinstance(value, dict):
    return {k: _decode(v) for k, v in value.items()}
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.dtype == object:
    return [_decode(v) for v in value.tolist()]
  if isinstance(value, np.ndarray):
    return value
  if isinstance(value, (np.integer, np.floating, np.bool_)):
    return value.item()
  if isinstance(value, list):
    return [_decode(v) for v in value]
  return value


def tfds_label_names(name: str, feature: str, config: ml_collections.ConfigDict) -> list[str]:
  """Names of a tfds ClassLabel feature (or of the ClassLabel inside a Sequence)."""
  import tensorflow_datasets as tfds

  kwargs = {"data_dir": config.tfds_data_dir} if config.get("tfds_data_dir") else {}
  feat = tfds.builder(name, **kwargs).info.features[feature]
  while hasattr(feat, "feature") and not hasattr(feat, "names"):
    feat = feat.feature
  return list(feat.names)
