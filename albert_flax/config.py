"""AlbertConfig: the hyper-parameters of an ALBERT model, its presets, and its JSON forms.

One frozen dataclass holds every field of transformers' `AlbertConfig` (same names, same defaults),
the head settings of the task models, and the fields that only a JAX implementation has: the
compute dtype, the parameter dtype, the remat policy and the attention implementation.

It reads transformers' `config.json` and the original google-research `albert_config.json`, and
writes transformers' `config.json` (so `save_pretrained(format="hf")` output loads there).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from albert_flax import paths, workdir

# Activations accepted in `hidden_act` (transformers' names). The original TF code's "gelu" is the
# tanh approximation, which transformers calls "gelu_new": see `from_original_dict`.
ACTIVATIONS = (
  "gelu",
  "gelu_new",
  "gelu_fast",
  "gelu_pytorch_tanh",
  "quick_gelu",
  "relu",
  "silu",
  "swish",
  "tanh",
  "sigmoid",
  "linear",
  "mish",
)
# "full" keeps only each step's output and recomputes the block in the backward pass; "dots"
# variants keep matmul outputs (jax.checkpoint_policies).
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
ATTENTION_IMPLEMENTATIONS = ("auto", "einsum", "xla", "cudnn")
DTYPES = ("float32", "bfloat16", "float16")
# What the L layer steps share (the paper's Table 4): "all" (ALBERT: one layer applied L times),
# "attention" (the attention block and its LayerNorm shared, the FFN and its LayerNorm one per
# layer), "ffn" (the reverse), "none" (every layer its own; with E = H, BERT).
CROSS_LAYER_SHARING = ("all", "attention", "ffn", "none")

# The fields of transformers' AlbertConfig.__init__, in its order.
TRANSFORMERS_FIELDS = (
  "vocab_size",
  "embedding_size",
  "hidden_size",
  "num_hidden_layers",
  "num_hidden_groups",
  "num_attention_heads",
  "intermediate_size",
  "inner_group_num",
  "hidden_act",
  "hidden_dropout_prob",
  "attention_probs_dropout_prob",
  "max_position_embeddings",
  "type_vocab_size",
  "initializer_range",
  "layer_norm_eps",
  "classifier_dropout_prob",
  "position_embedding_type",
  "pad_token_id",
  "bos_token_id",
  "eos_token_id",
)

# Fields our JSON form carries beyond transformers' config, under this key of config.json.
_EXTRA_KEY = "albert_flax"


@dataclasses.dataclass(frozen=True)
class AlbertConfig:
  """Hyper-parameters of ALBERT (transformers' names and defaults) plus JAX-only settings.

  The transformers defaults are those of albert-xxlarge; use `AlbertConfig.preset(name)` for the
  released sizes.
  """

  # --- transformers' AlbertConfig, same names and defaults ---
  vocab_size: int = 30000
  embedding_size: int = 128
  hidden_size: int = 4096
  num_hidden_layers: int = 12
  num_hidden_groups: int = 1
  num_attention_heads: int = 64
  intermediate_size: int = 16384
  inner_group_num: int = 1
  hidden_act: str = "gelu_new"
  hidden_dropout_prob: float = 0.0
  attention_probs_dropout_prob: float = 0.0
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12
  classifier_dropout_prob: float | None = 0.1
  position_embedding_type: str = "absolute"
  pad_token_id: int = 0
  bos_token_id: int = 2
  eos_token_id: int = 3

  # --- head settings of the task models ---
  num_labels: int = 2
  # "regression" | "single_label_classification" | "multi_label_classification" | None (inferred
  # as transformers does: regression when num_labels == 1).
  problem_type: str | None = None
  # Optional label names, index = class id (written as id2label/label2id in config.json).
  label_names: tuple[str, ...] | None = None

  # --- JAX-only settings ---
  dtype: str = "float32"  # compute dtype of matmuls; LayerNorm, softmax and losses stay float32
  param_dtype: str = "float32"
  remat: str = "none"  # one of REMAT_POLICIES, applied to the shared layer inside the scan
  # "auto": jax.nn.dot_product_attention unless attention-probability dropout is active, then
  # the explicit einsum path (dot_product_attention has no dropout). "xla"/"cudnn" force the fused
  # call with that implementation; "einsum" forces the explicit path.
  attention_implementation: str = "auto"
  # Scan the shared layer over depth (one compiled body, compile time flat in depth). False unrolls
  # in Python, which only exists for comparison in benchmarks.
  scan_layers: bool = True
  # One of CROSS_LAYER_SHARING. Unshared parts are stacked: one array per parameter with a
  # leading [num_hidden_layers] axis, at the path "all" gives it (see modeling.py). Only "all"
  # exports to transformers' and the original TF formats, which cannot express partial sharing.
  cross_layer_sharing: str = "all"

  def __post_init__(self):
    self.validate()

  # ------------------------------------------------------------------ checks
  def validate(self) -> None:
    """Raise ValueError naming every inconsistent field."""
    problems = []
    # Sizes and counts: every int field but the token ids (which may be 0). A field's type is
    # the string "int" under `from __future__ import annotations`, the class int without it.
    for name in (f.name for f in dataclasses.fields(self) if f.type in ("int", int)):
      if name.endswith("_token_id"):
        continue
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        problems.append(f"{name} must be a positive integer, got {value!r}")
    if not problems:
      if self.hidden_size % self.num_attention_heads:
        problems.append(
          f"hidden_size {self.hidden_size} is not a multiple of "
          f"num_attention_heads {self.num_attention_heads}"
        )
      if self.num_hidden_groups > self.num_hidden_layers:
        problems.append(
          f"num_hidden_groups {self.num_hidden_groups} > num_hidden_layers "
          f"{self.num_hidden_layers}: some groups would never run"
        )
    if self.hidden_act not in ACTIVATIONS:
      problems.append(f"hidden_act {self.hidden_act!r} is not one of {ACTIVATIONS}")
    if self.position_embedding_type != "absolute":
      problems.append(
        f"position_embedding_type {self.position_embedding_type!r} is not "
        "supported (ALBERT uses 'absolute')"
      )
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
      if not 0.0 <= float(getattr(self, name)) < 1.0:
        problems.append(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
    if self.classifier_dropout_prob is not None and not 0.0 <= self.classifier_dropout_prob < 1.0:
      problems.append(
        f"classifier_dropout_prob must be in [0, 1), got {self.classifier_dropout_prob!r}"
      )
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in DTYPES:
        problems.append(f"{name} {getattr(self, name)!r} is not one of {DTYPES}")
    if self.remat not in REMAT_POLICIES:
      problems.append(f"remat {self.remat!r} is not one of {REMAT_POLICIES}")
    if self.attention_implementation not in ATTENTION_IMPLEMENTATIONS:
      problems.append(
        f"attention_implementation {self.attention_implementation!r} is not one "
        f"of {ATTENTION_IMPLEMENTATIONS}"
      )
    problems += self._sharing_problems()
    if self.problem_type not in (
      None,
      "regression",
      "single_label_classification",
      "multi_label_classification",
    ):
      problems.append(f"problem_type {self.problem_type!r} is not recognised")
    if self.label_names is not None and len(self.label_names) != self.num_labels:
      problems.append(
        f"label_names has {len(self.label_names)} names but num_labels is {self.num_labels}"
      )
    if problems:
      raise ValueError("Invalid AlbertConfig: " + "; ".join(problems))

  def _sharing_problems(self) -> list[str]:
    sharing = self.cross_layer_sharing
    if sharing not in CROSS_LAYER_SHARING:
      return [f"cross_layer_sharing {sharing!r} is not one of {CROSS_LAYER_SHARING}"]
    if sharing == "all":
      return []
    # Groups are the original's other way of unsharing layers (G = L: one layer per group);
    # stacking within a group as well would be a third layout nothing else can read.
    return [
      f"cross_layer_sharing={sharing!r} needs {name}={needed!r}, got {name}="
      f"{getattr(self, name)!r}{reason}"
      for name, needed, reason in (
        ("num_hidden_groups", 1, " (groups share layers themselves)"),
        ("inner_group_num", 1, " (one layer per step)"),
        ("scan_layers", True, " (per-layer weights are stacked for the scan)"),
      )
      if getattr(self, name) != needed
    ]

  # ------------------------------------------------------------- derived
  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def compute_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def parameter_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)

  @property
  def resolved_problem_type(self) -> str:
    if self.problem_type is not None:
      return self.problem_type
    return "regression" if self.num_labels == 1 else "single_label_classification"

  def group_runs(self) -> list[tuple[int, int]]:
    """[(group index, number of consecutive layer steps it runs)], in order.

    Step l of L runs group int(l * G / L) (transformers' and the original's rule); that index is
    non-decreasing in l, so each group covers one contiguous run of steps and can be scanned.
    """
    counts = [0] * self.num_hidden_groups
    for layer in range(self.num_hidden_layers):
      counts[int(layer / (self.num_hidden_layers / self.num_hidden_groups))] += 1
    return [(g, n) for g, n in enumerate(counts)]

  def replace(self, **changes: Any) -> AlbertConfig:
    unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
    if unknown:
      raise ValueError(f"AlbertConfig has no field(s) {sorted(unknown)}")
    if changes.get("label_names") is not None:
      changes["label_names"] = tuple(changes["label_names"])
    return dataclasses.replace(self, **changes)

  # ------------------------------------------------------------- presets
  @classmethod
  def preset(cls, name: str, **overrides: Any) -> AlbertConfig:
    """A released ALBERT size ('base-v2', 'xxlarge-v1', ...) or 'tiny' (for tests and demos)."""
    if name not in PRESETS:
      raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return cls(**PRESETS[name]).replace(**overrides)

  @classmethod
  def preset_names(cls) -> list[str]:
    return sorted(PRESETS)

  # ---------------------------------------------------------------- JSON in
  @classmethod
  def from_dict(cls, raw: Mapping[str, Any], **overrides: Any) -> AlbertConfig:
    """From transformers' config.json dict or the original albert_config.json dict."""
    raw = dict(raw)
    is_transformers = "model_type" in raw or "architectures" in raw or "transformers_version" in raw
    if not is_transformers:
      return cls.from_original_dict(raw, **overrides)
    if raw.get("model_type", "albert") != "albert":
      raise ValueError(f"config.json is for model_type {raw['model_type']!r}, not 'albert'")
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in raw.items() if k in known}
    extras = raw.get(_EXTRA_KEY) or {}
    kwargs.update({k: v for k, v in extras.items() if k in known})
    id2label = raw.get("id2label")
    if id2label and "num_labels" not in extras:
      ordered = [id2label[k] for k in sorted(id2label, key=int)]
      kwargs["num_labels"] = len(ordered)
      if any(name != f"LABEL_{i}" for i, name in enumerate(ordered)):
        kwargs["label_names"] = tuple(ordered)
    elif "num_labels" in raw:
      kwargs["num_labels"] = raw["num_labels"]
    if kwargs.get("label_names") is not None:
      kwargs["label_names"] = tuple(kwargs["label_names"])
    kwargs.update(overrides)
    return cls(**kwargs)

  @classmethod
  def from_original_dict(cls, raw: Mapping[str, Any], **overrides: Any) -> AlbertConfig:
    """From google-research/albert's albert_config.json.

    The original `gelu` is the tanh approximation (modeling.py's gelu), i.e. transformers'
    "gelu_new"; the structures the original supports besides ALBERT proper (net_structure_type,
    memory blocks, down-scaling) are refused rather than silently built wrong.
    """
    raw = dict(raw)
    unsupported = {
      k: raw[k]
      for k, default in (
        ("net_structure_type", 0),
        ("gap_size", 0),
        ("num_memory_blocks", 0),
        ("down_scale_factor", 1),
      )
      if raw.get(k, default) != default
    }
    if raw.get("layers_to_keep"):
      unsupported["layers_to_keep"] = raw["layers_to_keep"]
    if unsupported:
      raise ValueError(
        f"albert_config.json uses structures this package does not build: {unsupported}"
      )
    act = raw.get("hidden_act", "gelu")
    kwargs = dict(
      vocab_size=raw["vocab_size"],
      embedding_size=raw.get("embedding_size", raw["hidden_size"]),
      hidden_size=raw["hidden_size"],
      num_hidden_layers=raw["num_hidden_layers"],
      num_hidden_groups=raw.get("num_hidden_groups", 1),
      num_attention_heads=raw["num_attention_heads"],
      intermediate_size=raw["intermediate_size"],
      inner_group_num=raw.get("inner_group_num", 1),
      hidden_act="gelu_new" if act == "gelu" else act,
      hidden_dropout_prob=raw.get("hidden_dropout_prob", 0.0),
      attention_probs_dropout_prob=raw.get("attention_probs_dropout_prob", 0.0),
      max_position_embeddings=raw.get("max_position_embeddings", 512),
      type_vocab_size=raw.get("type_vocab_size", 2),
      initializer_range=raw.get("initializer_range", 0.02),
    )
    kwargs.update(overrides)
    return cls(**kwargs)

  @classmethod
  def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> AlbertConfig:
    """Read transformers' config.json or the original albert_config.json (local or gs://...)."""
    try:
      raw = paths.read_json(path)
    except FileNotFoundError:
      raise FileNotFoundError(f"No ALBERT config file at {path}") from None
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
      raise ValueError(f"{path} does not hold a JSON object")
    return cls.from_dict(raw, **overrides)

  @classmethod
  def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> AlbertConfig:
    """The config of a checkpoint, read without its weights, from every layout
    `af.from_pretrained` reads (local or gs://...): a saved model (orbax or transformers:
    config.json), a pretraining workdir (config.json), a fine-tuning workdir (model/config.json),
    an original TF checkpoint (its directory or model.ckpt-N prefix, albert_config.json), or a
    Hugging Face Hub id (its config.json only is fetched).

    A TF checkpoint's albert_config.json has no num_labels: a fine-tuned one reads as 2 here
    (af.from_pretrained takes it from the classifier's shape).
    """
    name = os.fspath(path)
    directory = paths.path(name)
    for candidate in (
      directory / workdir.CONFIG_FILE,
      directory / workdir.MODEL_DIR / workdir.CONFIG_FILE,
    ):
      if candidate.is_file():
        return cls.from_json_file(candidate, **overrides)
    found = workdir.find_tf_checkpoint(name)
    if found is not None:
      return cls.from_json_file(found[1], **overrides)
    if directory.exists() or "://" in name or name.startswith(("/", ".", "~")):
      raise FileNotFoundError(
        f"No ALBERT config at {name}: expected {workdir.CONFIG_FILE} (a saved model or a "
        f"pretraining workdir), {workdir.MODEL_DIR}/{workdir.CONFIG_FILE} (a fine-tuning "
        "workdir) or albert_config.json with model.ckpt-*.index (original TF)"
      )
    import huggingface_hub  # a Hub id: only its config.json

    try:
      return cls.from_json_file(huggingface_hub.hf_hub_download(name, workdir.CONFIG_FILE))
    except Exception as e:  # offline, unknown repository, no network: all mean "not there"
      raise OSError(
        f"{name!r} is not a local path, and getting its {workdir.CONFIG_FILE} from the "
        f"Hugging Face Hub failed ({type(e).__name__}: {e})"
      ) from None

  # --------------------------------------------------------------- JSON out
  def to_hf_dict(self, architecture: str | None = None) -> dict[str, Any]:
    """transformers' config.json content (our extra fields under the "albert_flax" key)."""
    out: dict[str, Any] = {"model_type": "albert"}
    if architecture:
      out["architectures"] = [architecture]
    out.update({k: getattr(self, k) for k in TRANSFORMERS_FIELDS})
    names = self.label_names or tuple(f"LABEL_{i}" for i in range(self.num_labels))
    out["id2label"] = {str(i): n for i, n in enumerate(names)}
    out["label2id"] = {n: i for i, n in enumerate(names)}
    if self.problem_type is not None:
      out["problem_type"] = self.problem_type
    out["tie_word_embeddings"] = True
    out[_EXTRA_KEY] = {
      "num_labels": self.num_labels,
      "label_names": list(self.label_names) if self.label_names else None,
      "dtype": self.dtype,
      "param_dtype": self.param_dtype,
      "remat": self.remat,
      "attention_implementation": self.attention_implementation,
      "cross_layer_sharing": self.cross_layer_sharing,
    }
    return out

  def to_json_file(self, path: str | os.PathLike, architecture: str | None = None) -> None:
    """Write transformers' config.json (local or gs://..., in one atomic write)."""
    paths.write_json(path, self.to_hf_dict(architecture), indent=2, sort_keys=True)


def _released(hidden: int, layers: int, heads: int, intermediate: int, dropout: float) -> dict:
  return dict(
    vocab_size=30000,
    embedding_size=128,
    hidden_size=hidden,
    num_hidden_layers=layers,
    num_attention_heads=heads,
    intermediate_size=intermediate,
    hidden_act="gelu_new",
    hidden_dropout_prob=dropout,
    attention_probs_dropout_prob=dropout,
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
  )


# The released sizes (Lan et al., table 1; google-research/albert configs). v1 models were
# trained with dropout 0.1 except xxlarge; v2 models with none.
PRESETS: dict[str, dict[str, Any]] = {
  "base-v1": _released(768, 12, 12, 3072, 0.1),
  "base-v2": _released(768, 12, 12, 3072, 0.0),
  "large-v1": _released(1024, 24, 16, 4096, 0.1),
  "large-v2": _released(1024, 24, 16, 4096, 0.0),
  "xlarge-v1": _released(2048, 24, 16, 8192, 0.1),
  "xlarge-v2": _released(2048, 24, 16, 8192, 0.0),
  "xxlarge-v1": _released(4096, 12, 64, 16384, 0.0),
  "xxlarge-v2": _released(4096, 12, 64, 16384, 0.0),
  # Small enough to pretrain for a few minutes on a laptop CPU and learn something visible:
  # what `python -m pretrain` trains (pretrain/configs/tiny.py: 2000 pieces on the built-in
  # corpus; the shared layer applied twice learns as fast per step there as 4 times).
  "tiny": dict(
    vocab_size=2000,
    embedding_size=64,
    hidden_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=512,
    hidden_act="gelu_new",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
  ),
}
