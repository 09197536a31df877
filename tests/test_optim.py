"""LAMB, AdamW and the schedule against hand computations of their formulas (numpy, float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from albert_flax.train import optim


def _tree(rs):
  return {
    "encoder": {
      "dense": {"kernel": rs.randn(3, 4), "bias": rs.randn(4)},
      "LayerNorm": {"scale": rs.rand(4) + 0.5, "bias": rs.randn(4)},
      "full_layer_layer_norm": {"scale": rs.rand(4) + 0.5},
    },
    "zeros": {"kernel": np.zeros((2, 2))},  # ||w|| = 0: trust ratio 1
    "predictions": {"bias": rs.randn(5)},
  }


def _decayed(path: str) -> bool:
  return not any(word in path for word in ("LayerNorm", "layer_norm", "bias"))


def _paths(tree, prefix=""):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _paths(v, f"{prefix}{k}/")
    else:
      yield f"{prefix}{k}", v


def test_decay_mask_follows_the_original_exclude_list():
  rs = np.random.RandomState(0)
  mask = optim.decay_mask(_tree(rs))
  flat = dict(_paths(mask))
  assert flat == {p: _decayed(p) for p in flat}
  assert flat["encoder/dense/kernel"] and flat["zeros/kernel"]
  assert not flat["encoder/full_layer_layer_norm/scale"] and not flat["predictions/bias"]


def _apply(tx: optax.GradientTransformation, params, grads) -> dict:
  """{path: parameter} after `tx` has applied each gradient tree of `grads` in turn."""
  p = jax.tree.map(jnp.asarray, params)
  state = tx.init(p)
  for g in grads:
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, p)
    p = optax.apply_updates(p, updates)
  return dict(_paths(jax.device_get(p)))


def _original_adam_by_hand(params, grads, lr, b1, b2, eps, wd, trust_ratio: bool) -> dict:
  """{path: parameter} after the original's steps, in float64: m, v without bias correction,
  u = m / (sqrt(v) + eps) + wd * w where decayed; with `trust_ratio` (LAMB) u is scaled there by
  ||w|| / ||u|| (1 when either is 0); w -= lr * u."""
  expected = {}
  for path, w in _paths(params):
    w = w.astype(np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for g_tree in grads:
      g = dict(_paths(g_tree))[path]
      m = b1 * m + (1 - b1) * g
      v = b2 * v + (1 - b2) * g * g
      u = m / (np.sqrt(v) + eps)
      ratio = 1.0
      if _decayed(path):
        u = u + wd * w
        if trust_ratio:
          w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(u)
          ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
      w = w - lr * ratio * u
    expected[path] = w
  return expected


def test_lamb_matches_the_papers_formula_by_hand():
  """Two steps of the original ALBERT LAMB: no bias correction, decay and trust ratio masked."""
  rs = np.random.RandomState(0)
  params = _tree(rs)
  grads = [_tree(rs) for _ in range(2)]
  lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-6, 0.01
  got = _apply(optim.lamb(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd), params, grads)
  expected = _original_adam_by_hand(params, grads, lr, b1, b2, eps, wd, trust_ratio=True)
  assert set(got) == set(expected)
  for path in expected:
    np.testing.assert_allclose(got[path], expected[path], rtol=2e-5, atol=1e-6, err_msg=path)


def test_lamb_moments_have_no_bias_correction_unlike_optax():
  """The original's first update direction is 0.1 g / (sqrt(0.001) |g| + eps), about 3.16 sign(g);
  optax's Adam moments (used by optax.lamb) are bias-corrected to about sign(g)."""
  rs = np.random.RandomState(1)
  grads = {"dense": {"kernel": jnp.asarray(rs.randn(3, 4))}}
  g = np.asarray(grads["dense"]["kernel"], np.float64)
  moments = optim.scale_by_lamb_moments()
  ours, _ = moments.update(grads, moments.init(grads))
  np.testing.assert_allclose(
    ours["dense"]["kernel"], 0.1 * g / (np.sqrt(0.001) * np.abs(g) + 1e-6), rtol=1e-5
  )
  adam = optax.scale_by_adam(eps=1e-6)
  theirs, _ = adam.update(grads, adam.init(grads))
  np.testing.assert_allclose(theirs["dense"]["kernel"], g / (np.abs(g) + 1e-6), rtol=1e-5)
  assert not np.allclose(ours["dense"]["kernel"], theirs["dense"]["kernel"])


def test_adamw_matches_decoupled_adam_with_bias_correction():
  rs = np.random.RandomState(2)
  params = _tree(rs)
  grad = _tree(rs)
  lr, wd, eps = 0.01, 0.1, 1e-6
  tx = optim.adamw(lr, weight_decay=wd, eps=eps)
  p = jax.tree.map(jnp.asarray, params)
  updates, _ = tx.update(jax.tree.map(jnp.asarray, grad), tx.init(p), p)
  new = jax.device_get(optax.apply_updates(p, updates))
  g_flat = dict(_paths(grad))
  for path, w in _paths(params):
    g = g_flat[path]
    m_hat = (0.1 * g) / (1 - 0.9)
    v_hat = (0.001 * g * g) / (1 - 0.999)
    u = m_hat / (np.sqrt(v_hat) + eps) + (wd * w if _decayed(path) else 0.0)
    np.testing.assert_allclose(
      dict(_paths(new))[path], w - lr * u, rtol=1e-5, atol=1e-6, err_msg=path
    )


def test_adamw_without_bias_correction_is_the_original_adam_weight_decay_optimizer():
  """Two steps of google-research/albert's AdamWeightDecayOptimizer, by hand in float64:
  m, v without bias correction, u = m / (sqrt(v) + eps) + wd * w where decayed, w -= lr * u."""
  rs = np.random.RandomState(3)
  params = _tree(rs)
  grads = [_tree(rs) for _ in range(2)]
  lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-6, 0.01
  tx = optim.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, bias_correction=False)
  got = _apply(tx, params, grads)
  expected = _original_adam_by_hand(params, grads, lr, b1, b2, eps, wd, trust_ratio=False)
  assert set(got) == set(expected)
  for path in expected:
    np.testing.assert_allclose(got[path], expected[path], rtol=2e-5, atol=1e-6, err_msg=path)


def test_adamw_with_bias_correction_is_optax_adamw():
  """bias_correction=True (the default) is optax.adamw with the decay mask, over two steps."""
  rs = np.random.RandomState(4)
  params = jax.tree.map(jnp.asarray, _tree(rs))
  grads = [_tree(rs) for _ in range(2)]
  ours = optim.adamw(0.01, eps=1e-6, weight_decay=0.01, bias_correction=True)
  theirs = optax.adamw(0.01, eps=1e-6, weight_decay=0.01, mask=optim.decay_mask)
  p_ours, p_theirs = _apply(ours, params, grads), _apply(theirs, params, grads)
  assert set(p_ours) == set(p_theirs)
  for path in p_ours:
    np.testing.assert_allclose(p_ours[path], p_theirs[path], rtol=1e-6, atol=1e-7, err_msg=path)
  # And the default is the bias-corrected form, so existing callers keep their optimizer.
  default = optim.adamw(0.01, eps=1e-6, weight_decay=0.01)
  assert jax.tree.structure(default.init(params)) == jax.tree.structure(ours.init(params))


def test_create_optimizer_passes_bias_correction_to_adamw_only():
  params = {"w": jnp.ones((3,)), "bias": jnp.zeros((3,))}
  grads = {"w": jnp.asarray([0.3, -0.2, 0.1]), "bias": jnp.asarray([0.05, 0.0, -0.4])}

  def first_update(name, bias_correction):
    tx, _ = optim.create_optimizer(
      name, 0.1, 10, 0, grad_clip_norm=None, bias_correction=bias_correction
    )
    updates, _ = tx.update(grads, tx.init(params), params)
    return updates

  # First step on the decay-free bias: sign(g) with correction, 0.1 g / (sqrt(0.001)|g| + eps)
  # (about 3.16 sign(g)) without; the schedule gives lr 0.1 at step 0.
  g = np.asarray(grads["bias"], np.float64)
  np.testing.assert_allclose(
    first_update("adamw", True)["bias"], -0.1 * g / (np.abs(g) + 1e-6), rtol=1e-5
  )
  np.testing.assert_allclose(
    first_update("adamw", False)["bias"],
    -0.1 * 0.1 * g / (np.sqrt(0.001) * np.abs(g) + 1e-6),
    rtol=1e-5,
  )
  # LAMB ignores it.
  jax.tree.map(
    np.testing.assert_array_equal, first_update("lamb", True), first_update("lamb", False)
  )


def test_schedule_is_linear_warmup_then_polynomial_decay_from_step_zero():
  lr, total, warmup = 0.00176, 1000, 100
  schedule = optim.warmup_polynomial_decay(lr, total, warmup)
  for step in (0, 1, 50, 99):
    np.testing.assert_allclose(schedule(step), lr * step / warmup, rtol=1e-6)
  for step in (100, 500, 999, 1000, 2000):
    # tf.train.polynomial_decay(lr, step, total, end=0, power=1): the decay counts from step 0.
    np.testing.assert_allclose(
      schedule(step), lr * (1 - min(step, total) / total), rtol=1e-4, atol=1e-12
    )
  with pytest.raises(ValueError, match="total_steps"):
    optim.warmup_polynomial_decay(lr, 0, 0)


def test_create_optimizer_clips_to_global_norm_first():
  params = {"w": jnp.ones((4,)), "LayerNorm": {"scale": jnp.ones((4,))}}
  grads = {"w": jnp.full((4,), 3.0), "LayerNorm": {"scale": jnp.full((4,), 4.0)}}
  clipped_tx, _ = optim.create_optimizer("adamw", 0.1, 10, 0, weight_decay=0.0, grad_clip_norm=1.0)
  reference = optim.adamw(optim.warmup_polynomial_decay(0.1, 10, 0), weight_decay=0.0)
  norm = 10.0  # sqrt(4 * 3^2 + 4 * 4^2)
  scaled = jax.tree.map(lambda g: g / norm, grads)
  got, _ = clipped_tx.update(grads, clipped_tx.init(params), params)
  want, _ = reference.update(scaled, reference.init(params), params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
  with pytest.raises(ValueError, match="optimizer"):
    optim.create_optimizer("sgd", 0.1, 10, 0)
