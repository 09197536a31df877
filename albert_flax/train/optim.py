"""Optimizers and the learning-rate schedule of ALBERT pretraining and fine-tuning.

LAMB exactly as google-research/albert's `lamb_optimizer.py`, for each parameter w with gradient g
(already clipped to global norm 1.0):

    m <- b1 m + (1 - b1) g                  (no bias correction: the original has none)
    v <- b2 v + (1 - b2) g^2
    u  = m / (sqrt(v) + eps) + wd * w       (wd only where decayed)
    r  = ||w|| / ||u||, or 1 when either norm is 0, or when w is excluded
    w <- w - lr * r * u

with LayerNorm parameters and biases excluded from both decay and the trust ratio (names
containing "LayerNorm", "layer_norm" or "bias", as the original's exclude lists). A parameter
stacked over layers (the unshared blocks of `AlbertConfig.cross_layer_sharing`, [L, ...]) gets
one trust ratio per layer, as the original's separate per-layer variables do.

`optax.lamb` differs: its Adam moments are bias-corrected and it applies the trust ratio to every
parameter, so only its pieces that match are used here (global-norm clipping, decoupled decay,
trust ratio under a mask, learning-rate scaling); the moments are our own.

AdamW comes in two forms. `bias_correction=False` is the original `AdamWeightDecayOptimizer`
(google-research/albert `optimization.py`, used for fine-tuning and copied from BERT): the same
moments as above without bias correction, u = m / (sqrt(v) + eps) + wd * w (wd only where decayed),
w <- w - lr * u. `bias_correction=True` is `optax.adamw` (Adam's m_hat, v_hat), with the same
exclusions. The two differ only while b2^t is far from 0: on a steady gradient the original's
step is (1 - b1^t) / sqrt(1 - b2^t) times optax's, 3.2 at t = 1, 6.6 at t = 12, 1.26 at t = 1000,
1.03 at t = 3000; warm-up keeps the learning rate small over most of that stretch.

Schedule (the original's `optimization.py`): lr * step / warmup while step < warmup, then
polynomial decay (power 1.0) from lr at step 0 towards 0 at `total_steps`; the decay runs from
step 0, the warm-up merely overrides its start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from albert_flax import layer_sharing

Schedule = Callable[[jax.Array], jax.Array]

# Substrings of parameter names kept out of weight decay and the trust ratio (the original's list).
EXCLUDE_FROM_DECAY = ("LayerNorm", "layer_norm", "bias")
OPTIMIZERS = ("lamb", "adamw")


# ------------------------------------------------------------------------------------ schedule


def warmup_polynomial_decay(
  learning_rate: float,
  total_steps: int,
  warmup_steps: int,
  power: float = 1.0,
  end_learning_rate: float = 0.0,
) -> Schedule:
  """ALBERT's schedule as a function of the update count (0 for the first update)."""
  if total_steps <= 0:
    raise ValueError(f"total_steps must be positive, got {total_steps}")
  if warmup_steps < 0:
    raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
  decay = optax.polynomial_schedule(learning_rate, end_learning_rate, power, total_steps)
  if warmup_steps == 0:
    return decay
  warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)

  def schedule(count):
    return jnp.where(count < warmup_steps, warmup(count), decay(count))

  return schedule


# --------------------------------------------------------------------------------- masking


def _key_name(key: Any) -> str | None:
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return key.name
  return None


def decay_mask(params: Any, exclude: Sequence[str] = EXCLUDE_FROM_DECAY) -> Any:
  """Tree of bools over `params`: True where weight decay and the trust ratio apply.

  A leaf is excluded when any name on its path contains one of `exclude` (the original matches
  the same substrings against TF variable names such as .../LayerNorm/gamma and output_bias).
  """

  def keep(path, _):
    names = [n for n in map(_key_name, path) if n is not None]
    return not any(word in name for name in names for word in exclude)

  return jax.tree_util.tree_map_with_path(keep, params)


# --------------------------------------------------------------------------------- LAMB


class LambMomentsState(NamedTuple):
  mu: Any
  nu: Any


def scale_by_lamb_moments(
  b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6
) -> optax.GradientTransformation:
  """g -> m / (sqrt(v) + eps) with Adam's moments and no bias correction (original LAMB)."""

  def init_fn(params):
    zeros = lambda p: jnp.zeros_like(p, dtype=jnp.float32)
    return LambMomentsState(mu=jax.tree.map(zeros, params), nu=jax.tree.map(zeros, params))

  def update_fn(updates, state, params=None):
    del params
    mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g.astype(jnp.float32), state.mu, updates)
    nu = jax.tree.map(
      lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g.astype(jnp.float32)), state.nu, updates
    )
    out = jax.tree.map(lambda m, v, g: (m / (jnp.sqrt(v) + eps)).astype(g.dtype), mu, nu, updates)
    return out, LambMomentsState(mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_trust_ratio_per_layer() -> optax.GradientTransformation:
  """`optax.scale_by_trust_ratio`, with each layer of a stacked [L, ...] parameter (an unshared
  block of `AlbertConfig.cross_layer_sharing`) scaled by its own ||w_l|| / ||u_l||, as L separate
  parameters would be (the original's not-shared BERT has one per layer). Same state as optax's,
  so optimizer checkpoints are unchanged."""
  base = optax.scale_by_trust_ratio()

  def update_fn(updates, state, params=None):
    def scale(path, update, param):
      one = lambda u, w: base.update(u, state, w)[0]  # noqa: E731
      names = [n for n in map(_key_name, path) if n is not None]
      if layer_sharing.is_stacked(names, param.ndim):
        return jax.vmap(one)(update, param)
      return one(update, param)

    return jax.tree_util.tree_map_with_path(scale, updates, params), state

  return optax.GradientTransformation(base.init, update_fn)


def lamb(
  learning_rate: float | Schedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  weight_decay: float = 0.01,
  exclude_from_decay: Sequence[str] = EXCLUDE_FROM_DECAY,
) -> optax.GradientTransformation:
  """The original ALBERT LAMB (see the module docstring); excluded leaves get trust ratio 1."""
  return _original_update(learning_rate, b1, b2, eps, weight_decay, exclude_from_decay, True)


def adamw(
  learning_rate: float | Schedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  weight_decay: float = 0.01,
  exclude_from_decay: Sequence[str] = EXCLUDE_FROM_DECAY,
  bias_correction: bool = True,
) -> optax.GradientTransformation:
  """AdamW with decoupled decay lr * wd * w and the same exclusions as LAMB.

  bias_correction=True (the default, kept for existing callers) is `optax.adamw`; False is the
  original ALBERT/BERT `AdamWeightDecayOptimizer` (see the module docstring). The optimizer
  states differ in structure (optax's ScaleByAdamState vs LambMomentsState), so a checkpoint's
  optimizer state only restores into the same choice.
  """
  if bias_correction:
    mask = lambda params: decay_mask(params, exclude_from_decay)
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
  # LAMB's moments are exactly the original Adam's: m / (sqrt(v) + eps), no correction.
  return _original_update(learning_rate, b1, b2, eps, weight_decay, exclude_from_decay, False)


def _original_update(
  learning_rate: float | Schedule,
  b1: float,
  b2: float,
  eps: float,
  weight_decay: float,
  exclude_from_decay: Sequence[str],
  trust_ratio: bool,
) -> optax.GradientTransformation:
  """The original's update, LAMB's (trust_ratio) or AdamWeightDecayOptimizer's: moments without
  bias correction, decoupled decay, then the per-layer trust ratio (LAMB only), both where
  `decay_mask` allows, then the learning rate."""
  mask = lambda params: decay_mask(params, exclude_from_decay)
  parts = [scale_by_lamb_moments(b1, b2, eps), optax.add_decayed_weights(weight_decay, mask=mask)]
  if trust_ratio:
    # ||w|| / ||u||, 1 when either is zero: optax's trust ratio matches the original here.
    parts.append(optax.masked(scale_by_trust_ratio_per_layer(), mask))
  return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))


def create_optimizer(
  name: str,
  learning_rate: float,
  total_steps: int,
  warmup_steps: int,
  weight_decay: float = 0.01,
  grad_clip_norm: float | None = 1.0,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  power: float = 1.0,
  bias_correction: bool = True,
) -> tuple[optax.GradientTransformation, Schedule]:
  """Global-norm clipping, then LAMB or AdamW on ALBERT's schedule.

  Returns (optimizer, schedule); the schedule maps the update count to the learning rate (for
  logging). grad_clip_norm None or <= 0 disables clipping. bias_correction is AdamW's (see
  `adamw`); LAMB ignores it, since the original LAMB never bias-corrects.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"optimizer {name!r} is not one of {OPTIMIZERS}")
  schedule = warmup_polynomial_decay(learning_rate, total_steps, warmup_steps, power)
  if name == "lamb":
    build = lamb
  else:
    build = functools.partial(adamw, bias_correction=bias_correction)
  parts = []
  if grad_clip_norm is not None and grad_clip_norm > 0:
    # g * clip / max(||g||, clip), as tf.clip_by_global_norm.
    parts.append(optax.clip_by_global_norm(grad_clip_norm))
  parts.append(build(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
  return optax.chain(*parts), schedule
