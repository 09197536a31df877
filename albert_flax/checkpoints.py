"""from_pretrained / save_pretrained: orbax, transformers (safetensors / .bin) and original TF1.

    model, params = af.from_pretrained("albert/albert-base-v2", af.AlbertForSequenceClassification,
                                       num_labels=3)
    af.save_pretrained("out/", model, params, format="hf")     # or "orbax" (default), "tf"

Checkpoint layouts read by `from_pretrained(path)`, tried in this order:
  orbax      path/config.json + path/params/         (what save_pretrained(format="orbax") writes)
  workdir    a pretraining workdir: path/config.json + path/params/ once the run finished; before
             that (or with `step=`), path/checkpoints/<step>/state/ (an orbax CheckpointManager
             directory whose item "state" is a pytree with a "params" key holding the unboxed
             parameter tree; params only). An unfinished run is refused unless `step=N` or
             `step="latest"` asks for a mid-run checkpoint. A fine-tuning workdir: its model/.
  hf         path/config.json + model.safetensors | pytorch_model.bin | their sharded *.index.json
  tf         path/albert_config.json + path/model.ckpt-<step>.{index,data-*}, or the prefix itself;
             Google's Chinese albert_*_zh alike, brightmart albert_zh's albert_config_<size>.json +
             albert_model.ckpt (its own variable names, see convert_tf)
  hub id     anything else that looks like "owner/name": huggingface_hub.snapshot_download, then hf

Loading rules (every source goes through `_assemble`, in our parameter names):
  - Without a model class, the class the checkpoint was saved as (config.json "architectures")
    is built, so a fine-tuned head is never replaced by another; AlbertForPreTraining when the
    checkpoint does not say.
  - Known ALBERT parts the target model does not have (pooler, MLM head, SOP head, another task's
    head) are dropped and listed in one WARNING log line (trained weights are being discarded).
  - Parts the target needs that the checkpoint lacks (a new task head, a pooler) are initialized
    from `rng` and listed in one WARNING log line. A missing backbone tensor is an error.
  - A task head (`classifier`) saved by a different architecture (config.json "architectures")
    is another task's head: dropped, and the target's head is initialized fresh.
  - A head tensor whose shape differs from the target's is re-initialized (and logged) when you
    asked for a different head size (`num_labels=` different from the checkpoint's) or passed
    `ignore_mismatched_heads=True`; otherwise it is an error, as in transformers.
  - Names that are not ALBERT parameters, and backbone tensors whose shape does not match the
    config, raise one ValueError naming each tensor with expected and found shapes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import traverse_util

from albert_flax import convert_hf, convert_tf, integrity, model_card, paths, workdir
from albert_flax.config import AlbertConfig
from albert_flax.heads import MODEL_CLASSES, AlbertForPreTraining

logger = logging.getLogger(__name__)

CONFIG_NAME = workdir.CONFIG_FILE
ORBAX_PARAMS_DIR = workdir.ORBAX_PARAMS_DIR  # save_pretrained(format="orbax"): path/params/
WORKDIR_CHECKPOINTS = workdir.CHECKPOINTS_DIR  # pretraining workdir: path/checkpoints/<step>/state/
STATE_ITEM = workdir.STATE_ITEM
TOKENIZER_FILE = workdir.TOKENIZER_FILE
# What a Hub repository's tokenizer may be: spiece.model, or a WordPiece vocab.txt (Chinese models).
_HUB_TOKENIZER_FILES = [TOKENIZER_FILE, workdir.WORDPIECE_VOCAB_FILE, "tokenizer_config.json"]
# Heads whose meaning depends on the task (architecture), not just on their name.
_TASK_HEADS = ("classifier/",)
# Models whose head size transformers takes from num_labels but ours fixes at 2.
_FIXED_TWO_LABELS = ("AlbertForPreTraining", "AlbertForQuestionAnswering")


@dataclasses.dataclass
class _Source:
  """A checkpoint opened and renamed into our paths, before it meets a model."""

  description: str  # for messages: the file(s) read
  config: AlbertConfig
  # our path -> (source name, array in our layout, whether it was transposed)
  tensors: dict[str, tuple[str, np.ndarray, bool]]
  unknown: list[tuple[str, tuple[int, ...]]]  # source names that are not ALBERT parameters
  architecture: str | None = None


# =============================================================================== loading


def from_pretrained(
  path: str | os.PathLike,
  ModelClass: type[nn.Module] | str | None = None,
  *,
  step: int | str | None = None,
  dtype: str | None = None,
  param_dtype: str | None = None,
  rng: jax.Array | int = 0,
  ignore_mismatched_heads: bool = False,
  **head_kwargs: Any,
) -> tuple[nn.Module, dict]:
  """Load a checkpoint (see the module docstring for layouts) into `ModelClass`.

  Args:
    path: a directory, a TF checkpoint prefix, or a Hugging Face Hub id ("albert/albert-base-v2").
    ModelClass: one of the model classes (or its name); None: the class the checkpoint was saved
      as (config.json "architectures"), else AlbertForPreTraining.
    step: a pretraining workdir's checkpoint to read: a step number, or "latest" (the newest that
      reads back). Needed for a run that has not finished (it has no final model yet).
    dtype, param_dtype: compute / parameter dtype ("float32", "bfloat16"); parameters are cast.
    rng: key or seed for heads the checkpoint lacks.
    ignore_mismatched_heads: re-initialize head tensors whose shape differs from the target's.
    **head_kwargs: AlbertConfig fields overriding the checkpoint's config (num_labels=3, remat=...).
  Returns:
    (model, params): the flax module and its plain (unboxed) parameter tree.
  """
  if ModelClass is not None:
    model_cls = _model_class(ModelClass)
  overrides = dict(head_kwargs)
  if dtype is not None:
    overrides["dtype"] = dtype
  if param_dtype is not None:
    overrides["param_dtype"] = param_dtype
  source = _open(os.fspath(path), step)
  if ModelClass is None:
    model_cls = MODEL_CLASSES.get(source.architecture or "", AlbertForPreTraining)
  config = source.config.replace(**overrides)
  model = model_cls(config)
  resized = "num_labels" in head_kwargs and head_kwargs["num_labels"] != source.config.num_labels
  params = _assemble(source, model, rng, reinit_mismatched=ignore_mismatched_heads or resized)
  return model, params


def _model_class(model_class) -> type[nn.Module]:
  if isinstance(model_class, str):
    if model_class not in MODEL_CLASSES:
      raise ValueError(
        f"Unknown model class {model_class!r}; choose one of {sorted(MODEL_CLASSES)}"
      )
    return MODEL_CLASSES[model_class]
  if model_class not in MODEL_CLASSES.values():
    raise ValueError(
      f"{model_class!r} is not an ALBERT model class; choose one of {sorted(MODEL_CLASSES)}"
    )
  return model_class


def _open(path: str, step: int | str | None = None) -> _Source:
  """Find out which layout `path` (local or gs://...) is and read it."""
  directory = paths.path(path)
  if directory.is_dir():
    has_config = (directory / CONFIG_NAME).is_file()
    model_dir = directory / workdir.MODEL_DIR
    if not has_config and (model_dir / CONFIG_NAME).is_file():
      return _open(os.fspath(model_dir))  # a fine-tuning workdir: its model
    has_checkpoints = (directory / WORKDIR_CHECKPOINTS).is_dir()
    if has_config and has_checkpoints and step is not None:
      return _open_workdir_step(directory, step)
    if step is not None:
      raise ValueError(f"step={step!r}: {path} is not a pretraining workdir with checkpoints/")
    if has_config and (directory / ORBAX_PARAMS_DIR).is_dir():
      return _open_orbax(directory, directory / ORBAX_PARAMS_DIR, subtree=None)
    if has_config and has_checkpoints:
      steps = _workdir_steps(directory / WORKDIR_CHECKPOINTS)
      status = workdir.read_run_status(path) or {}
      state = status.get("status", "no run status")
      total = status.get("total_steps")
      raise ValueError(
        f"{path} is an unfinished pretraining run ({state}"
        + (f", step {status.get('step')} of {total}" if total else "")
        + f"): it has no final model yet, only checkpoints at steps {steps}. Pass step="
        f"{steps[-1] if steps else 'N'} or step='latest' to load a mid-run checkpoint "
        "(--config.init_from_step= in the programs), or finish the run."
      )
    files = convert_hf.weight_files(directory)
    if files:
      if not has_config:
        raise FileNotFoundError(f"{path} holds weights {files} but no {CONFIG_NAME}")
      return _open_hf(directory, files)
  found = convert_tf.find_checkpoint(path)
  if found is not None:
    return _open_tf(*found)
  if directory.exists():
    raise FileNotFoundError(
      f"No ALBERT checkpoint found at {path}: expected {CONFIG_NAME} with {ORBAX_PARAMS_DIR}/ "
      f"(orbax), {WORKDIR_CHECKPOINTS}/<step>/{STATE_ITEM}/ (pretraining workdir), "
      "model.safetensors or pytorch_model.bin (transformers), or albert_config.json with "
      "model.ckpt-*.index (original TF)"
    )
  if re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?", path) and ".." not in path:
    return _open_hf_path(_download(path))
  raise FileNotFoundError(f"No such file or directory: {path}")


def _open_hf_path(directory: str) -> _Source:
  files = convert_hf.weight_files(directory)
  if not files or not (paths.path(directory) / CONFIG_NAME).is_file():
    raise FileNotFoundError(
      f"{directory} has no {CONFIG_NAME} with model.safetensors or "
      "pytorch_model.bin: not a transformers ALBERT checkpoint"
    )
  return _open_hf(directory, files)


def _download(repo_id: str) -> str:
  """snapshot_download of config, weights and tokenizer; offline or failing -> clear OSError."""
  import huggingface_hub
  from huggingface_hub import constants

  offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {
    "1",
    "ON",
    "YES",
    "TRUE",
  } or bool(constants.HF_HUB_OFFLINE)
  try:
    directory = huggingface_hub.snapshot_download(
      repo_id,
      allow_patterns=[CONFIG_NAME, "model.safetensors*", *_HUB_TOKENIZER_FILES],
      local_files_only=offline,
    )
    if not convert_hf.weight_files(directory):  # an older repository: PyTorch pickles only
      directory = huggingface_hub.snapshot_download(
        repo_id,
        allow_patterns=[CONFIG_NAME, "pytorch_model.bin*", *_HUB_TOKENIZER_FILES],
        local_files_only=offline,
      )
  except Exception as e:  # offline, unknown repo, no network: all mean "could not get it"
    hint = (
      " HF_HUB_OFFLINE is set and the model is not in the local Hugging Face cache: "
      "download it while online (`huggingface-cli download " + repo_id + "`) or pass a "
      "local directory."
      if offline
      else " Check the id and your network, or pass a local directory."
    )
    raise OSError(
      f"{repo_id!r} is not a local path, and getting it from the Hugging Face Hub "
      f"failed ({type(e).__name__}: {e}).{hint}"
    ) from None
  return directory


# ------------------------------------------------------------------------ the formats


def _open_hf(directory: str | epath.Path, files: list[str]) -> _Source:
  config_path = paths.path(directory) / CONFIG_NAME
  config = AlbertConfig.from_json_file(config_path)
  architecture = _architecture(config_path)
  state = convert_hf.read_weight_files(files)
  # The decoder is tied to the word table and to predictions.bias; keep ours, check theirs.
  decoder_weight = state.pop(convert_hf.TIED_DECODER_WEIGHT, None)
  decoder_bias = state.pop(convert_hf.TIED_DECODER_BIAS, None)
  word = state.get(
    "albert.embeddings.word_embeddings.weight", state.get("embeddings.word_embeddings.weight")
  )
  if decoder_weight is not None and word is not None and not np.array_equal(decoder_weight, word):
    logger.warning(
      "%s: predictions.decoder.weight differs from the word embeddings; ALBERT ties "
      "them, the word embeddings are used",
      directory,
    )
  if decoder_bias is not None:
    if "predictions.bias" not in state:
      state["predictions.bias"] = decoder_bias
    elif not np.array_equal(decoder_bias, state["predictions.bias"]):
      logger.warning(
        "%s: predictions.decoder.bias differs from predictions.bias; the latter is used", directory
      )
  tensors, unknown = {}, []
  for name, array in state.items():
    if convert_hf.is_ignored(name):
      continue
    mapped = convert_hf.hf_name_to_path(name)
    if mapped is None:
      unknown.append((name, tuple(array.shape)))
      continue
    our_path, transpose = mapped
    tensors[our_path] = (name, array.T if transpose else array, transpose)
  return _Source(", ".join(files), config, tensors, unknown, architecture)


def _open_tf(prefix: str, config_path: str) -> _Source:
  # Google's layout or albert_zh's, in our paths.
  config, tensors, unknown = convert_tf.read_original(prefix, config_path)
  if "classifier/kernel" in tensors:
    # albert_config.json stores no num_labels: the classifier's width is the only record of it.
    config = config.replace(num_labels=int(tensors["classifier/kernel"][1].shape[-1]))
  return _Source(prefix, config, tensors, unknown, architecture=None)


def _workdir_steps(checkpoints_dir: epath.Path) -> list[int]:
  """The complete checkpoints' steps, ascending."""
  return sorted(
    int(d.name) for d in checkpoints_dir.iterdir() if d.name.isdigit() and (d / STATE_ITEM).is_dir()
  )


def _open_workdir_step(directory: epath.Path, step: int | str) -> _Source:
  """A pretraining workdir's checkpoint of `step`, or with "latest" the newest that reads back:
  an unreadable newest one is skipped with a warning, as a resuming run does."""
  checkpoints_dir = directory / WORKDIR_CHECKPOINTS
  steps = _workdir_steps(checkpoints_dir)
  if not steps:
    raise FileNotFoundError(f"{checkpoints_dir} holds no <step>/{STATE_ITEM}/ checkpoint")
  if step != "latest":
    if not isinstance(step, int) or step not in steps:
      raise ValueError(f"step={step!r}: {checkpoints_dir} holds the steps {steps} (or 'latest')")
    candidates = [step]
  else:
    candidates = steps[::-1]
  for i, candidate in enumerate(candidates):
    item = checkpoints_dir / str(candidate) / STATE_ITEM
    try:
      return _open_orbax(directory, item, subtree="params")
    except ValueError as e:
      if i + 1 == len(candidates):
        raise
      logger.warning(
        "checkpoint at step %d cannot be read (%s); loading the previous one", candidate, e
      )
  raise AssertionError("unreachable")


def _open_orbax(directory: epath.Path, item_dir: epath.Path, subtree: str | None) -> _Source:
  """Our own parameter names: restore (only the params of a train state) as numpy arrays."""
  import orbax.checkpoint as ocp

  config_path = directory / CONFIG_NAME
  config = AlbertConfig.from_json_file(config_path)
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    tree = checkpointer.metadata(item_dir).item_metadata.tree
    if subtree is not None:
      if not isinstance(tree, Mapping) or subtree not in tree:
        raise ValueError(
          f"the saved state has no {subtree!r} entry (keys: "
          f"{sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__})"
        )
      tree = {subtree: tree[subtree]}
    item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    restore_args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restored = checkpointer.restore(
      item_dir,
      args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=subtree is not None
      ),
    )
  except Exception as e:
    raise ValueError(
      f"Could not read the orbax checkpoint {item_dir}: it is corrupt, incomplete "
      f"or not a parameter tree ({type(e).__name__}: {e})"
    ) from None
  _verify_orbax(directory, item_dir, subtree, restored)
  if subtree is not None:
    restored = restored[subtree]
  tensors, unknown = {}, []
  for key, array in traverse_util.flatten_dict(_unwrap_boxes(restored)).items():
    our_path = "/".join(str(k) for k in key)
    if convert_hf.is_albert_path(our_path):
      tensors[our_path] = (our_path, np.asarray(array), False)
    else:
      unknown.append((our_path, tuple(np.shape(array))))
  return _Source(os.fspath(item_dir), config, tensors, unknown, _architecture(config_path))


def _verify_orbax(
  directory: epath.Path, item_dir: epath.Path, subtree: str | None, restored: Any
) -> None:
  """Check the restored arrays against the integrity record written with them (if any: older
  saves have none)."""
  if subtree is None:
    record = integrity.read_record(directory / workdir.INTEGRITY_FILE)
  else:  # a training checkpoint: <step>/integrity/ holds the whole state's record
    record = _read_json_item(item_dir.parent / workdir.INTEGRITY_ITEM)
    if record is not None:
      record = {k: v for k, v in record.items() if k.startswith(subtree + "/")}
  if record:
    integrity.verify(record, restored, item_dir)


def _read_json_item(item_dir: epath.Path) -> dict | None:
  """An orbax JsonSave item's content, or None when the item is absent."""
  if not item_dir.is_dir():
    return None
  import orbax.checkpoint as ocp

  return ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(item_dir)


def _unwrap_boxes(tree):
  """A saved nn.Partitioned box is {"value": array}: keep the array."""
  if isinstance(tree, Mapping):
    if set(tree) == {"value"} and not isinstance(tree["value"], Mapping):
      return tree["value"]
    return {k: _unwrap_boxes(v) for k, v in tree.items()}
  return tree


def _architecture(config_path: epath.Path) -> str | None:
  architectures = paths.read_json(config_path).get("architectures") or [None]
  return architectures[0]


# --------------------------------------------------------------- meeting the model


def _dummy_inputs(model: nn.Module) -> jax.Array:
  shape = (1, 1, 1) if type(model).__name__ == "AlbertForMultipleChoice" else (1, 1)
  return jnp.zeros(shape, jnp.int32)


def expected_shapes(model: nn.Module) -> dict[str, jax.ShapeDtypeStruct]:
  """{'/'-joined path: shape/dtype} of the model's parameters, without allocating them."""
  try:
    return dict(_expected_shapes_cached(model))
  except TypeError:  # an unhashable (bound) module: trace it again
    return _expected_shapes(model)


def _expected_shapes(model: nn.Module) -> dict[str, jax.ShapeDtypeStruct]:
  variables = jax.eval_shape(model.init, jax.random.key(0), _dummy_inputs(model))
  flat = traverse_util.flatten_dict(nn.meta.unbox(variables["params"]))
  return {"/".join(k): v for k, v in flat.items()}


# Tracing a model costs seconds at large sizes; a model (module + frozen config) is hashable.
_expected_shapes_cached = functools.lru_cache(maxsize=16)(_expected_shapes)


def _is_head(path: str) -> bool:
  return not path.startswith("albert/")


def _optional(path: str) -> bool:
  """Parts a checkpoint may lack and the model can initialize: heads and the pooler."""
  return _is_head(path) or path.startswith("albert/pooler/")


def _assemble(source: _Source, model: nn.Module, rng, reinit_mismatched: bool) -> dict:
  expected = expected_shapes(model)
  target = type(model).__name__
  problems = [f"{name} {list(shape)}: not an ALBERT parameter" for name, shape in source.unknown]
  loaded, dropped, fresh, reinit, failed = {}, [], [], set(), set()
  other_task = source.architecture is not None and source.architecture != target
  for path, (name, array, transposed) in sorted(source.tensors.items()):
    if other_task and path.startswith(_TASK_HEADS):
      dropped.append(f"{name} (head of {source.architecture})")
      continue
    if path not in expected:
      if _optional(path):
        dropped.append(name)
      else:
        problems.append(
          f"{name} {list(np.shape(array))}: a model with this config has no such "
          "parameter (num_hidden_groups / inner_group_num differ?)"
        )
      continue
    want = tuple(expected[path].shape)
    if tuple(array.shape) != want:

      def layout(shape, transposed=transposed):  # shapes as the source stores them
        return list(shape[::-1] if transposed else shape)

      if _is_head(path) and reinit_mismatched:
        fresh.append(
          f"{path} (checkpoint {name} is {layout(array.shape)}, model needs {layout(want)})"
        )
        reinit.add(path)
        continue
      hint = (
        " (a head of another size: pass num_labels= or ignore_mismatched_heads=True to "
        "re-initialize it)"
        if _is_head(path)
        else " (cross_layer_sharing differs?)"
        if len(array.shape) != len(want)  # per-layer weights carry a leading [layers] axis
        else ""
      )
      problems.append(f"{name}: expected shape {layout(want)}, found {layout(array.shape)}{hint}")
      failed.add(path)
      continue
    loaded[path] = array
  for path in [p for p in expected if p not in loaded and p not in reinit and p not in failed]:
    if _optional(path):
      fresh.append(path)
    else:
      problems.append(f"{path} {list(expected[path].shape)}: missing from the checkpoint")
  if not problems:
    integrity.check_finite(loaded, source.description)
  if problems:
    raise ValueError(
      f"Cannot load {source.description} into {target} "
      f"({len(problems)} problem(s)):\n  " + "\n  ".join(problems)
    )
  if dropped:
    logger.warning(
      "from_pretrained: %s drops these checkpoint tensors (it has no such parts; pass the "
      "checkpoint's own class to keep them): %s",
      target,
      ", ".join(dropped),
    )
  params = {p: jnp.asarray(a, dtype=expected[p].dtype) for p, a in loaded.items()}
  if fresh:
    logger.warning(
      "from_pretrained: %s parameters not in the checkpoint were freshly initialized "
      "(train them before use): %s",
      target,
      ", ".join(fresh),
    )
    key = jax.random.key(rng) if isinstance(rng, int) else rng
    spec = tuple(
      (p, tuple(like.shape), jnp.dtype(like.dtype).name)
      for p, like in expected.items()
      if p not in params
    )
    params.update(_fresh_parameters(spec, model.config.initializer_range)(key))
  return traverse_util.unflatten_dict({tuple(p.split("/")): a for p, a in params.items()})


def _initializer(path: str, initializer_range: float) -> nn.initializers.Initializer:
  """The initializer the model gives the parameter at `path` (modeling.dense / layer_norm / the
  embeddings' nn.Embed / the MLM head's bias): the same flax functions, so a fresh part has the
  distribution (and the sampling dtype) `model.init` would give it. Every parameter of every model
  is one of these four leaves; anything else is a new kind of parameter this must learn about."""
  leaf = path.rsplit("/", 1)[-1]
  if leaf in ("kernel", "embedding"):  # Dense kernels, embedding tables: N(0, initializer_range)
    return nn.initializers.normal(initializer_range)
  if leaf == "scale":  # LayerNorm
    return nn.initializers.ones_init()
  if leaf == "bias":  # Dense, LayerNorm and the MLM head's output bias
    return nn.initializers.zeros_init()
  raise ValueError(f"No initializer known for parameter {path}")


@functools.lru_cache(maxsize=32)
def _fresh_parameters(
  spec: tuple[tuple[str, tuple[int, ...], str], ...], initializer_range: float
) -> Callable[[jax.Array], dict[str, jax.Array]]:
  """A jitted key -> {path: new parameter} for `spec` ((path, shape, dtype name) per parameter).

  Made per tensor rather than by `model.init`, which would compile the whole model (~9 s for
  base on CPU) and allocate every parameter (0.9 GB for xxlarge) to obtain one small head; and
  in one jitted function rather than op by op, which compiles once instead of once per op and
  shape. Each tensor's key is `fold_in(key, crc32(path))`: deterministic given the key, and
  independent of which other parts happen to be missing. Cached: loading the same model again
  does not compile again.
  """
  inits = {path: _initializer(path, initializer_range) for path, _, _ in spec}  # raise early

  @jax.jit
  def make(key: jax.Array) -> dict[str, jax.Array]:
    return {
      path: inits[path](jax.random.fold_in(key, zlib.crc32(path.encode())), shape, jnp.dtype(dtype))
      for path, shape, dtype in spec
    }

  return make


# =============================================================================== saving


def save_pretrained(
  path: str | os.PathLike,
  model: nn.Module,
  params: Mapping,
  format: str = "orbax",
  *,
  tokenizer: Any = None,
) -> str:
  """Write `params` of `model` to the directory `path`.

  format: "orbax" (config.json + params/), "hf" (config.json + model.safetensors, loadable by
  transformers' AlbertFor*.from_pretrained) or "tf" (albert_config.json + model.ckpt-0, the
  original google-research/albert layout). `tokenizer`: a spiece.model or vocab.txt path, or an
  AlbertTokenizer / WordPieceTokenizer, written so that `af.load_tokenizer(path)` reloads it.
  Also writes a README.md model card (`albert_flax.model_card`). Returns `path`. "hf"/"tf"
  gather the arrays to host.
  """
  if format not in ("orbax", "hf", "tf"):
    raise ValueError(f"format must be 'orbax', 'hf' or 'tf', got {format!r}")
  directory = paths.path(path)
  model_cls = _model_class(type(model))
  config: AlbertConfig = model.config
  if format != "orbax" and config.cross_layer_sharing != "all":
    raise ValueError(
      f"format={format!r} cannot hold cross_layer_sharing={config.cross_layer_sharing!r} "
      "(transformers' and the original TF layouts share all of a layer or nothing); save it "
      'with format="orbax"'
    )
  if isinstance(params, Mapping) and set(params) == {"params"}:  # a variables dict
    params = params["params"]
  flat = {
    "/".join(k): v for k, v in traverse_util.flatten_dict(nn.meta.unbox(dict(params))).items()
  }
  _check_tree(flat, expected_shapes(model), model_cls.__name__)
  directory.mkdir(parents=True, exist_ok=True)
  architecture = model_cls.__name__
  if format == "orbax":
    import orbax.checkpoint as ocp

    # The small files are written once, by the first process (every process of a multi-host
    # run saves: each writes its own shards of the arrays, one object per file in a bucket).
    if jax.process_index() == 0:
      config.to_json_file(directory / CONFIG_NAME, architecture)
    checkpointer = ocp.StandardCheckpointer()
    unboxed = nn.meta.unbox(dict(params))
    checkpointer.save(directory / ORBAX_PARAMS_DIR, unboxed, force=True)
    checkpointer.wait_until_finished()
    # After the arrays: a record without its arrays is never left behind. Every process takes
    # part in fingerprinting (the arrays may be sharded over processes); the first one writes.
    record = integrity.fingerprints(unboxed)
    if jax.process_index() == 0:
      integrity.write_record(directory / workdir.INTEGRITY_FILE, record)
  elif format == "hf":
    if architecture in _FIXED_TWO_LABELS:  # transformers sizes these heads by num_labels
      config = config.replace(num_labels=2, label_names=None, problem_type=None)
    config.to_json_file(directory / CONFIG_NAME, architecture)
    bare = architecture == "AlbertModel"
    tensors = {}
    for our_path, value in flat.items():
      name, transpose = convert_hf.path_to_hf_name(our_path, bare=bare)
      array = np.asarray(jax.device_get(value))
      tensors[name] = array.T if transpose else array
    if "predictions.bias" in tensors:  # the tied decoder, as transformers lays it out
      tensors[convert_hf.TIED_DECODER_WEIGHT] = tensors["albert.embeddings.word_embeddings.weight"]
      tensors[convert_hf.TIED_DECODER_BIAS] = tensors["predictions.bias"]
    convert_hf.write_safetensors(directory / "model.safetensors", tensors)
  else:
    original_config = convert_tf.original_config_dict(config)
    paths.write_json(directory / "albert_config.json", original_config, indent=2)
    tensors = {}
    for our_path, value in flat.items():
      name, transpose = convert_tf.path_to_tf_name(our_path)
      array = np.asarray(jax.device_get(value), dtype=np.float32)  # the original reads float32
      tensors[name] = array.T if transpose else array
    convert_tf.write_checkpoint(directory, tensors)
  if tokenizer is not None and jax.process_index() == 0:
    _save_tokenizer(tokenizer, directory)
  if jax.process_index() == 0:  # README.md: architecture, parameter counts, training, limits
    shapes = {p: tuple(np.shape(v)) for p, v in flat.items()}
    model_card.write_model_card(directory, config, architecture, shapes, format)
  return os.fspath(directory)


def _check_tree(flat: dict, expected: dict, target: str) -> None:
  problems = [f"{p}: not a parameter of {target}" for p in flat if p not in expected]
  problems += [f"{p}: missing" for p in expected if p not in flat]
  problems += [
    f"{p}: shape {list(np.shape(flat[p]))}, the model needs {list(expected[p].shape)}"
    for p in flat
    if p in expected and tuple(np.shape(flat[p])) != expected[p].shape
  ]
  if problems:
    raise ValueError(f"params do not belong to this {target}:\n  " + "\n  ".join(problems))


def _save_tokenizer(tokenizer: Any, directory: epath.Path) -> None:
  """The vocabulary the model goes with, as `af.load_tokenizer` finds it: a tokenizer writes
  itself (spiece.model or vocab.txt, and tokenizer_config.json naming its class); a file (local
  or gs://...) is copied as spiece.model (a *.model) or vocab.txt (a WordPiece vocabulary)."""
  if isinstance(tokenizer, (str, os.PathLike)):
    source = paths.path(tokenizer)
    if not source.is_file():
      raise FileNotFoundError(f"tokenizer file {tokenizer} does not exist")
    target = directory / (TOKENIZER_FILE if source.suffix == ".model" else "vocab.txt")
    if source != target:
      paths.write_bytes(target, source.read_bytes())
  elif hasattr(tokenizer, "save_pretrained"):
    tokenizer.save_pretrained(directory)
  elif hasattr(tokenizer, "save_vocabulary"):
    tokenizer.save_vocabulary(directory)
  else:
    raise TypeError(
      "tokenizer must be a spiece.model or vocab.txt path, an AlbertTokenizer or a "
      f"WordPieceTokenizer, got {type(tokenizer).__name__}"
    )
