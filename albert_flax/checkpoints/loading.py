"""from_pretrained: orbax, transformers (safetensors / .bin) and original TF1 checkpoints.

    model, params = af.from_pretrained("albert/albert-base-v2", af.AlbertForSequenceClassification,
                                       num_labels=3)

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

import functools
import logging
import os
import zlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from albert_flax.checkpoints import integrity, sources
from albert_flax.heads import MODEL_CLASSES, AlbertForPreTraining

# The checkpoint formats' logger: users set the level of from_pretrained's warnings by this name.
logger = logging.getLogger("albert_flax.checkpoints")

# Heads whose meaning depends on the task (architecture), not just on their name.
_TASK_HEADS = ("classifier/",)
# Models whose head size transformers takes from num_labels but ours fixes at 2.
FIXED_TWO_LABELS = ("AlbertForPreTraining", "AlbertForQuestionAnswering")


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
    model_cls = resolve_model_class(ModelClass)
  overrides = dict(head_kwargs)
  if dtype is not None:
    overrides["dtype"] = dtype
  if param_dtype is not None:
    overrides["param_dtype"] = param_dtype
  source = sources.open_checkpoint(os.fspath(path), step)
  if ModelClass is None:
    model_cls = MODEL_CLASSES.get(source.architecture or "", AlbertForPreTraining)
  config = source.config.replace(**overrides)
  model = model_cls(config)
  resized = "num_labels" in head_kwargs and head_kwargs["num_labels"] != source.config.num_labels
  params = _assemble(source, model, rng, reinit_mismatched=ignore_mismatched_heads or resized)
  return model, params


def resolve_model_class(model_class) -> type[nn.Module]:
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


def dummy_inputs(model: nn.Module) -> jax.Array:
  shape = (1, 1, 1) if type(model).__name__ == "AlbertForMultipleChoice" else (1, 1)
  return jnp.zeros(shape, jnp.int32)


def expected_shapes(model: nn.Module) -> dict[str, jax.ShapeDtypeStruct]:
  """{'/'-joined path: shape/dtype} of the model's parameters, without allocating them."""
  try:
    return dict(_expected_shapes_cached(model))
  except TypeError:  # an unhashable (bound) module: trace it again
    return _expected_shapes(model)


def _expected_shapes(model: nn.Module) -> dict[str, jax.ShapeDtypeStruct]:
  variables = jax.eval_shape(model.init, jax.random.key(0), dummy_inputs(model))
  flat = traverse_util.flatten_dict(nn.meta.unbox(variables["params"]))
  return {"/".join(k): v for k, v in flat.items()}


# Tracing a model costs seconds at large sizes; a model (module + frozen config) is hashable.
_expected_shapes_cached = functools.lru_cache(maxsize=16)(_expected_shapes)


def _is_head(path: str) -> bool:
  return not path.startswith("albert/")


def _optional(path: str) -> bool:
  """Parts a checkpoint may lack and the model can initialize: heads and the pooler."""
  return _is_head(path) or path.startswith("albert/pooler/")


def _assemble(source: sources.Source, model: nn.Module, rng, reinit_mismatched: bool) -> dict:
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
