"""The generic training machinery: train state, sharded init, the jitted train and eval steps.

Shared by the pretraining and fine-tuning programs. A task contributes two functions:

    stats_fn(params, batch, rng, train) -> {name: (weighted sum, weight)}
        every loss and metric of one (micro-)batch as sums (see `albert_flax.train.losses`);
    loss_weights_fn(batch) -> {name: total weight}
        for each loss term, its denominator over the WHOLE batch; it depends on the data only.

The objective is  sum over loss terms of  sum_over_batch / total_weight.  Because the denominators
are known before any forward pass, each micro-batch's gradient is already scaled by the global
denominators, and accumulating micro-batch gradients (a `lax.scan` inside the step) gives exactly
the gradient of one big batch. All sums run over the global batch (the batch is one global
`jax.Array`), so the result is independent of how many devices or processes hold it.

The rest of the machinery a training loop uses lives beside this file: `checkpoints.py`
(`TrainCheckpointManager`, `PreemptionGuard`), `metric_writers.py`, `optim.py`, `losses.py`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from albert_flax import sharding
from albert_flax.train import losses

Array = jax.Array
Batch = Mapping[str, Array]
Stats = dict[str, tuple[Array, Array]]
StatsFn = Callable[[Any, Batch, Array, bool], Stats]
LossWeightsFn = Callable[[Batch], Mapping[str, Array]]


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint must hold to resume training exactly (the data position aside)."""

  step: Array  # int32 scalar: number of updates applied so far
  params: Any
  opt_state: Any


# ------------------------------------------------------------------------------ sharded init


def _boxed_state_fn(
  init_params_fn: Callable[[Array], Any], optimizer: optax.GradientTransformation
) -> Callable[[Array], TrainState]:
  def boxed_state(rng):
    params = init_params_fn(rng)
    # The optimizer moments mirror the boxed params, so they inherit the params' axis names.
    return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params)
    )

  return boxed_state


def abstract_train_state(
  init_params_fn: Callable[[Array], Any],
  optimizer: optax.GradientTransformation,
  mesh: Mesh,
  rng: Array,
  rules: Sequence[tuple[str, Any]] = sharding.LOGICAL_RULES,
) -> tuple[TrainState, TrainState]:
  """(shapes, shardings) of the train state, computing nothing: a checkpoint's restore target
  is `abstract_with_shardings(*abstract_train_state(...))`."""
  abstract_boxed = jax.eval_shape(_boxed_state_fn(init_params_fn, optimizer), rng)
  return sharding.unbox(abstract_boxed), sharding.tree_shardings(abstract_boxed, mesh, rules)


def init_train_state(
  init_params_fn: Callable[[Array], Any],
  optimizer: optax.GradientTransformation,
  mesh: Mesh,
  rng: Array,
  params: Any = None,
  rules: Sequence[tuple[str, Any]] = sharding.LOGICAL_RULES,
) -> tuple[TrainState, TrainState]:
  """A TrainState created directly in its shardings, and the shardings.

  Args:
    init_params_fn: rng -> params carrying flax logical-partitioning boxes (e.g.
      `lambda r: model.init(r, dummy_ids)["params"]`); only traced, for shapes and axis names,
      when `params` is given.
    params: optional existing (unboxed) params, e.g. from `af.from_pretrained`, to start from;
      they must have the structure and shapes `init_params_fn` gives.
  Returns:
    (state, state_shardings), both TrainState pytrees.
  """
  abstract, shardings = abstract_train_state(init_params_fn, optimizer, mesh, rng, rules)
  if params is None:
    boxed_state = _boxed_state_fn(init_params_fn, optimizer)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      state = jax.jit(lambda r: sharding.unbox(boxed_state(r)), out_shardings=shardings)(rng)
    return state, shardings

  _check_same_shapes(abstract.params, params)
  params = jax.device_put(params, shardings.params)

  def from_params(p):
    return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=optimizer.init(p))

  with jax.set_mesh(mesh):
    state = jax.jit(from_params, in_shardings=(shardings.params,), out_shardings=shardings)(params)
  return state, shardings


def _check_same_shapes(expected: Any, given: Any) -> None:
  flat_e = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(expected)}
  flat_g = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(given)}
  missing, extra = sorted(set(flat_e) - set(flat_g)), sorted(set(flat_g) - set(flat_e))
  wrong = [
    f"{k}: {tuple(np.shape(flat_g[k]))} != {tuple(flat_e[k].shape)}"
    for k in sorted(set(flat_e) & set(flat_g))
    if np.shape(flat_g[k]) != flat_e[k].shape
  ]
  if missing or extra or wrong:
    raise ValueError(
      "initial params do not match the model: "
      + "; ".join(
        filter(
          None,
          [
            f"missing {missing[:5]}" if missing else "",
            f"unexpected {extra[:5]}" if extra else "",
            f"shape {wrong[:5]}" if wrong else "",
          ],
        )
      )
    )


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying shardings: the restore target of a checkpoint."""
  return jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
  )


# ----------------------------------------------------------------------------- jitted steps


class MeshFunction:
  """A jitted function that is traced and run under its mesh and logical axis rules.

  Flax's `with_logical_constraint` reads both from context at trace time; wrapping every call
  keeps callers free of that detail. `.lower(...)` exposes the compiled cost / memory analyses.
  Executables compiled ahead (`compile_concurrently`) are run for calls whose arguments have
  their shapes and dtypes; other calls go through jit.
  """

  def __init__(self, jitted: Callable, mesh: Mesh, rules: Sequence[tuple[str, Any]]):
    self._jitted, self.mesh, self.rules = jitted, mesh, rules
    self._compiled: dict[tuple, jax.stages.Compiled] = {}

  def __call__(self, *args):
    if self._compiled:
      executable = self._compiled.get(_signature(args))
      if executable is not None:
        return executable(*args)
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      return self._jitted(*args)

  def lower(self, *args):
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      return self._jitted.lower(*args)


def _signature(args: tuple) -> tuple:
  """What an executable is compiled for: the arguments' tree, shapes and dtypes."""
  leaves, treedef = jax.tree.flatten(args)
  return (treedef, *((tuple(x.shape), np.dtype(x.dtype)) for x in leaves))


def compile_concurrently(
  jobs: Sequence[tuple[MeshFunction, tuple]], max_threads: int | None = None
) -> int:
  """Compiles every (function, arguments) job ahead of its first call, several at once.

  XLA compiles one program on one thread and releases the GIL while it does, so the programs a
  run will need (one per padded length, for each step) compile side by side on the host's
  cores instead of one after the other at their first calls. Tracing and lowering hold the GIL
  and run here first, in order. arguments: arrays or ShapeDtypeStructs with the shardings the
  calls will have. Jobs whose shapes are compiled already are skipped. Returns how many
  programs were compiled.
  """
  import concurrent.futures

  todo, seen = [], set()
  for function, args in jobs:
    key = _signature(args)
    if key in function._compiled or (id(function), key) in seen:
      continue
    seen.add((id(function), key))
    todo.append((function, key, function.lower(*args)))
  if not todo:
    return 0
  threads = min(len(todo), max_threads or os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="compile") as pool:
    executables = list(pool.map(lambda job: job[2].compile(), todo))
  for (function, key, _), executable in zip(todo, executables, strict=True):
    function._compiled[key] = executable
  return len(todo)


def _split_micro_batches(batch: Batch, num: int, mesh: Mesh) -> Batch:
  """[B, ...] -> [num, B // num, ...] with micro-batch k = rows k, k + num, ...

  Interleaving (not contiguous chunks) keeps every micro-batch spread over all batch shards:
  each device's own rows split into `num` parts, so no data moves between devices.
  """
  batch_rows = jax.tree.leaves(batch)[0].shape[0]
  if batch_rows % (num * sharding.batch_split(mesh)):
    raise ValueError(
      f"batch of {batch_rows} rows cannot be split into {num} "
      f"micro-batches over {sharding.batch_split(mesh)} batch shards"
    )

  def split(x):
    y = x.reshape((x.shape[0] // num, num) + x.shape[1:]).swapaxes(0, 1)
    spec = PartitionSpec(None, sharding.BATCH_AXES, *([None] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(y, NamedSharding(mesh, spec))

  return {k: split(v) for k, v in batch.items()}


def _accumulate(
  micro_loss: Callable, params: Any, micro_batches: Batch, state_shardings: TrainState
) -> tuple[tuple[Array, Stats], Any]:
  """((loss, stats), grads) of micro_loss(params, micro, k) -> (loss, stats) summed over the
  micro-batches [num, rows, ...] in a `lax.scan`: the gradient of the whole batch, since each
  micro-batch's loss is already scaled by the whole batch's denominators."""
  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)
  zero_grads = jax.lax.with_sharding_constraint(
    jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params), state_shardings.params
  )
  first = jax.tree.map(lambda x: x[0], micro_batches)
  zero_stats = jax.tree.map(
    lambda s: jnp.zeros(s.shape, jnp.float32),
    jax.eval_shape(lambda: micro_loss(params, first, 0)[1]),
  )

  def body(carry, xs):
    grads_acc, loss_acc, stats_acc = carry
    micro, k = xs
    (loss_k, stats_k), grads_k = grad_fn(params, micro, k)
    return (
      jax.tree.map(jnp.add, grads_acc, grads_k),
      loss_acc + loss_k,
      jax.tree.map(jnp.add, stats_acc, stats_k),
    ), None

  num = jax.tree.leaves(micro_batches)[0].shape[0]
  (grads, loss, stats), _ = jax.lax.scan(
    body, (zero_grads, jnp.zeros((), jnp.float32), zero_stats), (micro_batches, jnp.arange(num))
  )
  return (loss, stats), grads


def _objective(stats: Stats, totals: Mapping[str, Array]) -> Array:
  return sum(stats[name][0] / jnp.maximum(totals[name], 1e-30) for name in totals)


def make_train_step(
  stats_fn: StatsFn,
  loss_weights_fn: LossWeightsFn,
  optimizer: optax.GradientTransformation,
  state_shardings: TrainState,
  mesh: Mesh,
  *,
  grad_accum_steps: int = 1,
  seed: int | None = 0,
  learning_rate_fn: Callable[[Array], Array] | None = None,
  rules: Sequence[tuple[str, Any]] = sharding.LOGICAL_RULES,
) -> MeshFunction:
  """The jitted `(state, batch) -> (state, metrics)` train step; `state` is donated.

  Args:
    stats_fn, loss_weights_fn: the task (see the module docstring).
    state_shardings: from `init_train_state`.
    grad_accum_steps: micro-batches per step; the batch's leading dim must be divisible by
      grad_accum_steps * (data * fsdp) so every micro-batch is split evenly over devices.
    seed: base of the dropout RNG, folded with the step (and the micro-batch) so a resumed run
      draws the same masks. None: the step takes it as its own third argument,
      `(state, batch, seed) -> (state, metrics)` with `seed` an int32 scalar (`step_seed`), so
      runs that differ only in seed share one compiled step; the masks are those the same seed
      given here would draw.
    learning_rate_fn: optional schedule, to report "learning_rate".
  Returns:
    A MeshFunction; metrics (replicated float32 scalars) hold every stat as sum / weight,
    "loss" (the objective), "grad_norm" (before clipping) and "learning_rate".
  """
  if grad_accum_steps < 1:
    raise ValueError(f"grad_accum_steps must be >= 1, got {grad_accum_steps}")

  def step(state: TrainState, batch: Batch, run_seed: Array | None = None):
    base_key = jax.random.key(seed if run_seed is None else run_seed)
    rng = jax.random.fold_in(base_key, state.step)
    totals = loss_weights_fn(batch)

    def micro_loss(params, micro, k):
      stats = stats_fn(params, micro, jax.random.fold_in(rng, k), True)
      missing = set(totals) - set(stats)
      if missing:
        raise ValueError(f"stats_fn returned no {sorted(missing)} named by loss_weights_fn")
      return _objective(stats, totals), stats

    if grad_accum_steps == 1:
      grad_fn = jax.value_and_grad(micro_loss, has_aux=True)
      (loss, stats), grads = grad_fn(state.params, batch, 0)
    else:
      micro_batches = _split_micro_batches(batch, grad_accum_steps, mesh)
      (loss, stats), grads = _accumulate(micro_loss, state.params, micro_batches, state_shardings)

    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {name: losses.ratio(s, w) for name, (s, w) in stats.items()}
    metrics["loss"] = loss
    metrics["grad_norm"] = optax.global_norm(grads)
    if learning_rate_fn is not None:
      metrics["learning_rate"] = jnp.asarray(learning_rate_fn(state.step), jnp.float32)
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  replicated = NamedSharding(mesh, PartitionSpec())
  in_shardings = (state_shardings, sharding.batch_sharding(mesh))
  jitted = jax.jit(
    step,
    in_shardings=in_shardings if seed is not None else in_shardings + (replicated,),
    out_shardings=(state_shardings, replicated),
    donate_argnums=0,
  )
  return MeshFunction(jitted, mesh, rules)


def step_seed(seed: int) -> np.ndarray:
  """The `seed` argument of a train step built with `seed=None`: an int32 scalar (one dtype
  for every run, so they share the compiled step)."""
  return np.asarray(seed, np.int32)


def abstract_step_seed(mesh: Mesh) -> jax.ShapeDtypeStruct:
  """`step_seed`'s shape, dtype and sharding (replicated), for compiling ahead of time."""
  return jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(mesh, PartitionSpec()))


def make_eval_step(
  stats_fn: StatsFn,
  params_shardings: Any,
  mesh: Mesh,
  rules: Sequence[tuple[str, Any]] = sharding.LOGICAL_RULES,
) -> MeshFunction:
  """The jitted `(params, batch) -> stats` eval step (deterministic; sums, not means).

  Add the stats of several batches with `add_stats` and turn them into metrics with
  `stats_to_metrics`, so an eval over many batches weighs every example once.
  """

  def step(params, batch):
    return stats_fn(params, batch, jax.random.key(0), False)

  replicated = NamedSharding(mesh, PartitionSpec())
  jitted = jax.jit(
    step, in_shardings=(params_shardings, sharding.batch_sharding(mesh)), out_shardings=replicated
  )
  return MeshFunction(jitted, mesh, rules)


def add_stats(total: Stats | None, stats: Stats) -> Stats:
  """Element-wise sum of two stats dicts (host numpy float64, to add many batches exactly)."""
  stats = {k: (np.float64(s), np.float64(w)) for k, (s, w) in jax.device_get(stats).items()}
  if total is None:
    return stats
  return {k: (total[k][0] + s, total[k][1] + w) for k, (s, w) in stats.items()}


def stats_to_metrics(stats: Stats, loss_names: Sequence[str] = ()) -> dict[str, float]:
  """{name: sum / weight}; plus "loss" = the sum of the `loss_names` terms when given."""
  metrics = {k: float(s / w) if w > 0 else 0.0 for k, (s, w) in stats.items()}
  if loss_names:
    metrics["loss"] = float(sum(metrics[n] for n in loss_names))
  return metrics


def check_finite(metrics: Mapping[str, Any], step: int) -> None:
  """Raise FloatingPointError naming the step and values when the loss is NaN or infinite."""
  loss = float(metrics["loss"])
  if not np.isfinite(loss):
    shown = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
    raise FloatingPointError(
      f"loss is {loss} at step {step}; stopping (checkpoints are kept). "
      f"Metrics of that step: {shown}"
    )


@dataclasses.dataclass
class ProgramSteps:
  """Everything a program's loop needs besides data: the optimizer, the state's layout, the train
  step. Each program adds its evaluation step (pretrain.steps, finetune.steps)."""

  optimizer: optax.GradientTransformation
  schedule: Callable[[Any], Any]
  init_params_fn: Callable[[jax.Array], Any]  # rng -> boxed params (for shapes and axis names)
  abstract_state: TrainState  # ShapeDtypeStructs
  state_shardings: TrainState
  train_step: MeshFunction  # (state, batch[, seed]) -> (state, metrics): see make_train_step
