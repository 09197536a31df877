"""Integrity of saved arrays: a fingerprint per array, written with every checkpoint, checked.

Flipped bytes inside an array file of a checkpoint can decode without error into wrong (often NaN)
weights. Every checkpoint we write therefore carries a record {array path: fingerprint} (training
checkpoints as an item of the orbax checkpoint, saved models as INTEGRITY_FILE next to params/),
and every read recomputes the fingerprints and names the arrays that differ.

The fingerprint of an array is sum_i bits(x_i) * w_i mod 2^32 over its elements in row-major
order, with bits(x_i) the element's bit pattern as an unsigned integer and w_i = (i * 2654435761)
| 1 an odd weight per position. Integer addition is associative, so the value does not depend on
how the array is sharded or in which order XLA reduces it: it is computed on the devices where the
arrays live (no gathering of a sharded state to one host), and equally in numpy on a loaded
array. A single flipped bit changes it (odd weight times a power of two is never 0 mod 2^32);
a swapped pair of elements changes it (different weights). It is not a cryptographic hash: it
guards against corruption, not against tampering. (crc32/sha256 from zlib/hashlib would need
each array whole on one host, in one byte order and layout: not what a sharded save has.)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from albert_flax import paths

_GOLDEN = 2654435761  # Knuth's multiplicative hash constant (2^32 / phi)


def _key_name(key: Any) -> str:
  for attribute in ("name", "key", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _flat(tree: Any) -> dict[str, Any]:
  """{"a/b/c": leaf}: dict keys, dataclass fields and sequence indices joined by "/"."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(_key_name(k) for k in path): leaf for path, leaf in leaves}


def _bits_np(x: np.ndarray) -> np.ndarray:
  x = np.ascontiguousarray(x)
  if x.dtype == np.bool_:
    return x.astype(np.uint32).reshape(-1)
  unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint32}[x.dtype.itemsize]
  return x.reshape(-1).view(unsigned).astype(np.uint32)


def fingerprint_numpy(x: Any) -> int:
  """The fingerprint of one host array (see the module docstring)."""
  bits = _bits_np(np.asarray(x))
  weights = (np.arange(bits.size, dtype=np.uint32) * np.uint32(_GOLDEN)) | np.uint32(1)
  with np.errstate(over="ignore"):
    return int(np.sum(bits * weights, dtype=np.uint32))


def _bits_jax(x: jax.Array) -> jax.Array:
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32).reshape(-1)
  size = jnp.dtype(x.dtype).itemsize
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[size]
  return jax.lax.bitcast_convert_type(x, unsigned).reshape(-1).astype(jnp.uint32)


@functools.partial(jax.jit)
def _fingerprints_jit(leaves: list[jax.Array]) -> list[jax.Array]:
  out = []
  for x in leaves:
    bits = _bits_jax(x)
    weights = (jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(_GOLDEN)) | jnp.uint32(1)
    out.append(jnp.sum(bits * weights, dtype=jnp.uint32))
  return out


def fingerprints(tree: Any) -> dict[str, int]:
  """{array path: fingerprint} of a tree of (possibly sharded, multi-process) jax or numpy
  arrays, computed where the arrays are; the same on every process."""
  flat = _flat(tree)
  names = [n for n, v in flat.items() if hasattr(v, "shape")]
  if not names:
    return {}
  if all(isinstance(flat[n], np.ndarray | np.generic) for n in names):
    return {n: fingerprint_numpy(flat[n]) for n in names}
  values = _fingerprints_jit([jnp.asarray(flat[n]) for n in names])
  # Each result is replicated: this process's copy is the value.
  return {n: int(np.asarray(v.addressable_data(0))) for n, v in zip(names, values)}


def mismatches(record: Mapping[str, int], tree: Any) -> list[str]:
  """The array paths whose fingerprint differs from `record` (or that one of them lacks)."""
  got = fingerprints(tree)
  bad = [n for n in record if n in got and int(record[n]) != got[n]]
  bad += [f"{n} (missing)" for n in record if n not in got]
  return sorted(bad)


def verify(record: Mapping[str, int], tree: Any, where: str) -> None:
  """Raise ValueError naming every array of `tree` whose bytes are not the ones saved."""
  bad = mismatches(record, tree)
  if bad:
    raise ValueError(
      f"{where} fails its integrity check: the saved bytes of {len(bad)} array(s) changed "
      f"since they were written (corrupt file?): {', '.join(bad[:20])}"
      + (" ..." if len(bad) > 20 else "")
    )


def check_finite(flat: Mapping[str, Any], where: str) -> None:
  """Raise ValueError naming the floating-point arrays that hold NaN or infinity."""
  bad = [
    name
    for name, x in flat.items()
    if np.issubdtype(np.asarray(x).dtype, np.floating) and not np.all(np.isfinite(np.asarray(x)))
  ]
  if bad:
    raise ValueError(
      f"{where} holds non-finite weights (NaN or infinity) in: {', '.join(sorted(bad))}"
    )


def write_record(path: str | os.PathLike, record: Mapping[str, int]) -> None:
  """Write `record` ({array path: fingerprint}) as JSON to `path`, local or gs://... (atomically:
  never half, see albert_flax.paths)."""
  paths.write_json(path, dict(record), indent=0, sort_keys=True)


def read_record(path: str | os.PathLike) -> dict[str, int] | None:
  """The record at `path`, or None when there is none."""
  try:
    return paths.read_json(path)
  except FileNotFoundError:
    return None
