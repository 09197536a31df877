"""Which jax backend a program starts on, and quiet libtpu where there is no TPU.

With libtpu installed (the route to compile-only mode), jax tries the TPU backend on every start
and libtpu prints a screen of errors on a machine without a TPU chip (no TPU worker hostnames, no
host bounds, its lock file). A CPU run asks jax for the CPU only; compile-only mode tells libtpu's
runtime not to look for TPU hosts. On a TPU VM (chips present) nothing changes, so the messages
that matter there stay.
"""

from __future__ import annotations

import os

from albert_flax import upstream


def _has_tpu_chips() -> bool:
  """A TPU chip on the PCI bus (Google's vendor id), as jax's own check looks for."""
  import glob

  for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
    try:
      with open(vendor) as f:
        if f.read().strip() == "0x1ae0":
          return True
    except OSError:
      continue
  return False


def _accelerator_plugins() -> bool:
  """Whether a jax accelerator plugin (CUDA, ROCm, ...) is installed."""
  import importlib.metadata
  import importlib.util

  return bool(importlib.metadata.entry_points(group="jax_plugins")) or (
    importlib.util.find_spec("jax_plugins") is not None
  )


def quiet_libtpu_without_tpu() -> None:
  """Before libtpu loads for compile-only mode: on a machine without a TPU chip, quiet its runtime
  (`upstream.LIBTPU_RUNTIME_WITHOUT_CHIP`); on a TPU VM nothing changes."""
  if not _has_tpu_chips():
    upstream.quiet_libtpu_runtime()


def use_cpu_without_accelerator() -> None:
  """On a machine with no TPU chip and no accelerator plugin, tell jax to use the CPU only.

  With libtpu installed (the route to compile-only mode), jax otherwise tries the TPU backend on
  every start, and libtpu prints a screen of errors (no TPU worker hostnames, host bounds, its
  lock file) that mean nothing on a CPU. JAX_PLATFORMS, when set, is left alone; on a TPU VM
  (chips present) nothing changes, so the messages that matter there stay.
  """
  if os.environ.get("JAX_PLATFORMS") or "JAX_FORCE_TPU_INIT" in os.environ:
    return
  if _has_tpu_chips() or _accelerator_plugins():
    return
  import jax

  jax.config.update("jax_platforms", "cpu")
