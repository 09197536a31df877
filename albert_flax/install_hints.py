"""The pip command that adds an optional dependency, written for the way albert-flax is installed.

albert-flax is not on the Python package index: `pip install albert-flax[tf]` finds nothing. A
checkout (the usual install, `pip install -e .`) gets `pip install -e '<checkout>[tf]'`; an
install from a URL or a folder (pip records it in the distribution's direct_url.json, PEP 610)
gets that URL with the extra; anything else gets the extra's packages themselves.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

DISTRIBUTION = "albert-flax"
# setup.cfg's [options.extras_require], for installs that cannot name the extra.
EXTRA_PACKAGES = {
  "tf": "tensorflow-cpu",
  "data": "tensorflow-datasets",
  "tpu": "'jax[tpu]'",
  "zh": "jieba",
}


def _checkout() -> str | None:
  """The source tree albert_flax is imported from, when it is one (setup.cfg next to it)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return root if os.path.isfile(os.path.join(root, "setup.cfg")) else None


def _installed_from() -> str | None:
  """The URL pip installed the distribution from (git+https://..., file:///...), if recorded."""
  try:
    from importlib import metadata

    text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
  except Exception:  # not installed as a distribution, or no record
    return None
  if not text:
    return None
  record = json.loads(text)
  url = record.get("url", "")
  vcs = record.get("vcs_info", {}).get("vcs")
  return f"{vcs}+{url}" if vcs and not url.startswith(f"{vcs}+") else url or None


def pip_install(extra: str) -> str:
  """`pip install ...` that adds setup.cfg's `extra` ("tf", "data", "tpu", "zh") here."""
  checkout = _checkout()
  if checkout is not None:
    return f"pip install -e '{checkout}[{extra}]'"
  url = _installed_from()
  if url and url.startswith("file://"):
    return f"pip install '{url[len('file://') :]}[{extra}]'"
  if url:
    return f"pip install '{DISTRIBUTION}[{extra}] @ {url}'"
  return f"pip install {EXTRA_PACKAGES.get(extra, extra)}"


# ------------------------------------------------------------ the export extra's packages
EXPORT_INSTALL_HINT = "pip install -e '.[export]'"
# jax2onnx goes in without its dependencies (setup.cfg's export extra says why).
JAX2ONNX_HINT = f"{EXPORT_INSTALL_HINT} && pip install --no-deps jax2onnx==0.17.1"


class MissingExtraError(ImportError):
  """A converter or runtime of the `export` extra is not installed."""


def require(module: str, purpose: str) -> Any:
  """Import `module` or raise a one-line MissingExtraError naming the extra."""
  try:
    return importlib.import_module(module)
  except ImportError:
    package = module.split(".")[0]
    hint = JAX2ONNX_HINT if package == "jax2onnx" else EXPORT_INSTALL_HINT
    raise MissingExtraError(
      f"{purpose} needs the package {package!r} of the 'export' extra: {hint}"
    ) from None
