"""TPU slices by name: jax's topology names and gcloud's accelerator types, the chip figures
(HBM, peak bf16 FLOP/s) and the compile-only devices of a slice (libtpu, no TPU needed).

Used by `albert_flax.train.aot` (compile-only mode).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax

from albert_flax import upstream

GiB = 1024**3

# ========================================================================== slices by name


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU generation as this module uses it.

  hbm_bytes and peak_bf16_flops are per jax device (a v3 device is one of a chip's two
  TensorCores; v4 and v5p devices are whole chips, "megacore"), from Google's data sheets.
  gcloud_unit: what the number in an accelerator type counts ("cores" or "chips").
  """

  generation: str
  gcloud_prefix: str
  gcloud_unit: str
  torus_dims: int
  hbm_bytes: int
  peak_bf16_flops: float
  chip_config_name: str | None = None


CHIPS = {
  "v3": Chip("v3", "v3", "cores", 2, 16 * GiB, 123e12 / 2),
  "v4": Chip("v4", "v4", "cores", 3, 32 * GiB, 275e12, chip_config_name="megacore"),
  "v5e": Chip("v5e", "v5litepod", "chips", 2, 16 * GiB, 197e12),
  "v5p": Chip("v5p", "v5p", "cores", 3, 95 * GiB, 459e12),
  "v6e": Chip("v6e", "v6e", "chips", 2, 32 * GiB, 918e12),
}


@dataclasses.dataclass(frozen=True)
class Topology:
  """A TPU slice (or `num_slices` identical ones): `name` is jax's, e.g. "v4:8x8x8"."""

  chip: Chip
  shape: tuple[int, ...]
  num_slices: int = 1

  @property
  def name(self) -> str:
    return f"{self.chip.generation}:" + "x".join(map(str, self.shape))

  @property
  def description(self) -> str:
    return self.name + (f" x {self.num_slices} slices" if self.num_slices > 1 else "")

  def devices(self) -> list[jax.Device]:
    """The compile-only devices of the slice(s) (needs libtpu; no TPU)."""
    # The compiler never opens a chip: another jax process may hold libtpu's lock file.
    upstream.allow_multiple_libtpu_load()  # LIBTPU_LOCKFILE
    try:
      import libtpu  # noqa: F401
    except ImportError as e:
      raise ImportError(
        "compiling for TPU without a TPU needs libtpu: pip install 'jax[tpu]==<your jax "
        "version>' (albert-flax's [test] and [tpu] extras include it)"
      ) from e
    from jax.experimental import topologies

    kwargs: dict[str, Any] = {}
    if self.chip.chip_config_name:
      kwargs["chip_config_name"] = self.chip.chip_config_name
    if self.num_slices > 1:
      kwargs["num_slices"] = self.num_slices
    return list(topologies.get_topology_desc(self.name, "tpu", **kwargs).devices)


def _default_shape(chips: int, dims: int) -> tuple[int, ...]:
  """The torus gcloud gives a slice of `chips` chips: powers of two, as even as possible,
  smallest first (v4-512 = 256 chips -> 4x8x8; v5litepod-128 -> 8x16)."""
  shape = [1] * dims
  if dims == 3 and chips >= 4:
    shape = [2, 2, 1]
    chips //= 4
  while chips > 1:
    shape[shape.index(min(shape))] *= 2
    chips //= 2
  return tuple(sorted(shape)) if dims == 2 or shape[2] != 1 else tuple(shape)


def parse_topology(name: str, num_slices: int = 1) -> Topology:
  """jax's slice names ("v4:8x8x8", "v5e:16x16", "v5p:4x4x8", "v6e:8x8", "v3:8x8") or gcloud's
  accelerator types ("v4-1024", "v5litepod-256", "v5p-128", "v6e-64", "v3-128")."""
  if num_slices < 1:
    raise ValueError(f"num_slices must be >= 1, got {num_slices}")
  known = ", ".join(
    f"{c.generation}:AxB{'xC' if c.torus_dims == 3 else ''}" for c in CHIPS.values()
  )
  gcloud = {c.gcloud_prefix: c for c in CHIPS.values()} | {"v5e": CHIPS["v5e"]}
  match = re.fullmatch(r"(v\d+[a-z]*):(\d+(?:x\d+)+)", name.strip())
  if match:
    chip = CHIPS.get(match.group(1))
    if chip is None:
      raise ValueError(f"unknown TPU generation in {name!r}; known: {known}")
    shape = tuple(int(s) for s in match.group(2).split("x"))
    if len(shape) != chip.torus_dims or min(shape) < 1:
      raise ValueError(f"{name!r}: a {chip.generation} slice has {chip.torus_dims} torus dims")
    return Topology(chip, shape, num_slices)
  match = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name.strip())
  if match and match.group(1) in gcloud:
    chip, count = gcloud[match.group(1)], int(match.group(2))
    chips = count // 2 if chip.gcloud_unit == "cores" else count
    if chips < 1 or chips & (chips - 1) or (chip.gcloud_unit == "cores" and count % 2):
      raise ValueError(f"{name!r}: no such slice (sizes are powers of two)")
    return Topology(chip, _default_shape(chips, chip.torus_dims), num_slices)
  raise ValueError(
    f"unknown TPU topology {name!r}: give jax's name ({known}, e.g. v4:8x8x8) or a gcloud "
    "accelerator type (v3-128, v4-1024, v5litepod-256, v5p-128, v6e-64)"
  )
