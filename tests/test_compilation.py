"""Compiling ahead (training.compile_concurrently) and the programs' persistent compilation cache
(program.use_compilation_cache, --compilation_cache_dir)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.compilation_cache import compilation_cache

from albert_flax import sharding
from albert_flax.train import program, training


def _mesh_function():
  mesh = sharding.make_mesh(-1, 1, 1, jax.devices()[:1])

  def step(x, y):
    return {"out": jnp.tanh(x @ y).sum(-1), "n": x.shape[-1]}

  return training.MeshFunction(jax.jit(step), mesh, sharding.LOGICAL_RULES)


def test_compile_concurrently_runs_the_executables_it_compiled():
  f = _mesh_function()
  args = {w: (np.ones((4, w), np.float32), np.full((w, 3), 0.1, np.float32)) for w in (8, 16, 24)}
  abstract = {
    w: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x) for w, x in args.items()
  }
  jobs = [(f, abstract[8]), (f, abstract[16]), (f, args[16])]  # the repeat is compiled once
  assert training.compile_concurrently(jobs, max_threads=2) == 2
  assert training.compile_concurrently(jobs) == 0  # all compiled already
  jitted, through_jit = f._jitted, []

  def recording_jit(*a):
    through_jit.append(a[0].shape[-1])
    return jitted(*a)

  f._jitted = recording_jit
  for w in (8, 16, 24):  # every result equals jit's
    out = f(*args[w])
    np.testing.assert_array_equal(out["out"], jitted(*args[w])["out"])
    assert int(out["n"]) == w
  assert through_jit == [24]  # 8 and 16 ran the executables compiled ahead


def test_compilation_cache_flag_default_environment_and_off(tmp_path, monkeypatch):
  """The default (~/.cache/albert_flax/jax) applies only where no cache is set; a cache set
  beforehand (JAX_COMPILATION_CACHE_DIR) is kept unless the flag is given; '' turns it off.
  The compiled programs land in the cache in use."""
  saved = jax.config.jax_compilation_cache_dir
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    default = program.use_compilation_cache(program.DEFAULT_COMPILATION_CACHE)
    assert default == str(tmp_path / "home" / ".cache" / "albert_flax" / "jax")
    # set already (as by JAX_COMPILATION_CACHE_DIR): the flag's default leaves it
    assert program.use_compilation_cache(str(tmp_path / "other")) == default
    given = program.use_compilation_cache(str(tmp_path / "given"), explicit=True)
    assert given == str(tmp_path / "given")
    jax.jit(lambda x: jnp.sin(x) * 5 + 1).lower(jnp.ones((7, 3))).compile()
    entries = os.listdir(given)
    assert entries, "nothing written to the cache"
    assert program.use_compilation_cache("", explicit=True) is None
    jax.jit(lambda x: jnp.cos(x) * 4 - 2).lower(jnp.ones((5, 3))).compile()
    assert os.listdir(given) == entries  # off: nothing more written
  finally:
    jax.config.update("jax_compilation_cache_dir", saved)
    compilation_cache.reset_cache()
