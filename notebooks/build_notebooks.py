"""Writes notebooks/quickstart.ipynb and notebooks/pretrain_tpu.ipynb (without outputs).

    python notebooks/build_notebooks.py

The notebooks' cells live in quickstart_cells.py and pretrain_tpu_cells.py as plain strings, so
that they are reviewed and diffed as code; tests/test_notebooks.py checks that the committed
.ipynb files are exactly what this writes, then executes them. Edit the cells there, never the
.ipynb files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from pretrain_tpu_cells import pretrain_tpu  # noqa: E402
from quickstart_cells import quickstart  # noqa: E402

NOTEBOOKS: dict[str, Callable[[], nbformat.NotebookNode]] = {
  "quickstart.ipynb": quickstart,
  "pretrain_tpu.ipynb": pretrain_tpu,
}


def main() -> None:
  for name, build in NOTEBOOKS.items():
    path = os.path.join(HERE, name)
    nbformat.write(build(), path)
    print("wrote", path)


if __name__ == "__main__":
  main()
