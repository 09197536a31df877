"""The notebook generator's helpers: cells as (kind, source, tags), stable ids, the install cell."""

from __future__ import annotations

import os
import textwrap

import nbformat
from nbformat import v4

# The install cell both notebooks start with. `find_spec` keeps it a no-op where the package is
# already importable (a checkout installed with `pip install -e .`, the test suite), so it never
# touches the network there.
INSTALL = """\
# Installs albert-flax where it is missing (Colab, a fresh TPU VM); does nothing where it is
# already importable. PIP_SPEC: this repository's URL ("git+https://...") or a local checkout.
import importlib.util
PIP_SPEC = "albert-flax"
if importlib.util.find_spec("albert_flax") is None:
  %pip install -q {PIP_SPEC} {EXTRAS}
"""


def build(
  name: str, cells: list[tuple[str, str, tuple[str, ...]]], metadata: dict
) -> nbformat.NotebookNode:
  """A validated notebook without outputs from (kind "md" | "code", source, tags) cells.

  Cell ids are derived from the file name and position, so regenerating is a no-op.
  """
  nb = v4.new_notebook(metadata=metadata)
  stem = os.path.splitext(name)[0]
  for i, (kind, source, tags) in enumerate(cells):
    source = textwrap.dedent(source).strip("\n")
    cell = v4.new_markdown_cell(source) if kind == "md" else v4.new_code_cell(source)
    if tags:
      cell.metadata["tags"] = list(tags)
    cell.id = f"{stem}-{i:02d}"
    nb.cells.append(cell)
  nbformat.validate(nb)
  return nb


def md(source: str) -> tuple[str, str, tuple[str, ...]]:
  """A markdown cell (source is dedented)."""
  return ("md", source, ())


def code(source: str, *tags: str) -> tuple[str, str, tuple[str, ...]]:
  """A code cell (source is dedented); tags such as "parameters" go to its metadata."""
  return ("code", source, tags)


KERNEL = {
  "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
  "language_info": {"name": "python"},
}
