"""The notebooks run top to bottom in a fresh Jupyter kernel; any cell error fails the test.

Each notebook is executed with nbclient in a kernel this test writes itself (a kernelspec for this
very interpreter in a temp dir, so nothing needs `ipykernel install`), offline (HF_HUB_OFFLINE=1:
the notebooks then build their models locally instead of downloading them), on CPU, in a temp
working directory. A notebook's cell tagged "parameters" is followed by an injected cell with the
tiny sizes below, as papermill does. The committed .ipynb files must also hold no outputs and be
exactly their jupytext sources (notebooks/*.py, percent format, linted with the rest of the tree),
so the two cannot drift: edit the .py, then `jupytext --sync notebooks/*.py`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jupytext
import nbclient
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
KERNEL_NAME = "albert-flax-tests"
# Seconds one cell may take; the slowest cells (a few jitted train steps) take ~10 s on 2 cores.
CELL_TIMEOUT_S = 300


# Values injected after each notebook's "parameters" cell.
PARAMETERS = {
  "quickstart.ipynb": {"FINETUNE_STEPS": 6},
  "pretrain_tpu.ipynb": {"NUM_STEPS": 6, "RESUME_STEPS": 3, "BATCH_SIZE": 8, "MAX_SEQ_LENGTH": 64},
}


@pytest.fixture(scope="module")
def kernel_manager_factory(tmp_path_factory):
  """A factory of KernelManagers for a kernelspec of this interpreter, written to a temp dir."""
  kernels = tmp_path_factory.mktemp("kernels")
  env = {
    # The repository first, so the notebooks import this checkout even when not pip-installed.
    "PYTHONPATH": os.pathsep.join(
      [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    ),
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "JAX_PLATFORMS": "cpu",
    "MPLBACKEND": "Agg",
    "TF_CPP_MIN_LOG_LEVEL": "3",
  }
  spec_dir = write_kernel_spec(
    path=kernels / KERNEL_NAME, overrides={"display_name": "albert-flax tests", "env": env}
  )
  # write_kernel_spec uses "python" from PATH unless told: pin this interpreter.
  spec_file = Path(spec_dir) / "kernel.json"
  spec = json.loads(spec_file.read_text())
  spec["argv"][0] = sys.executable
  spec_file.write_text(json.dumps(spec))
  ksm = KernelSpecManager(kernel_dirs=[str(kernels)])
  assert KERNEL_NAME in ksm.find_kernel_specs()

  def make() -> KernelManager:
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)

  return make


def _inject_parameters(nb, values: dict) -> None:
  tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
  assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
  source = "# Injected by tests/test_notebooks.py\n" + "".join(
    f"{name} = {value!r}\n" for name, value in values.items()
  )
  cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
  cell.id = "injected-parameters"
  nb.cells.insert(tagged[0] + 1, cell)
  # Every injected name must already be a parameter of that cell, or the injection is a typo.
  params_source = nb.cells[tagged[0]].source
  for name in values:
    assert f"{name} =" in params_source, f"{name} is not set in the parameters cell"


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_notebook_runs(name, kernel_manager_factory, tmp_path):
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  _inject_parameters(nb, PARAMETERS[name])
  km = kernel_manager_factory()
  client = nbclient.NotebookClient(
    nb,
    km=km,
    timeout=CELL_TIMEOUT_S,
    allow_errors=False,
    resources={"metadata": {"path": str(tmp_path)}},
  )
  try:
    client.execute()  # raises CellExecutionError naming the failing cell
  finally:
    # nbclient leaves a kernel it was handed running (it owns only those it starts): stop it and
    # its process group, or idle kernels outlive the test run.
    if km.has_kernel:
      km.shutdown_kernel(now=True)
  assert not km.is_alive()
  errors = [
    out
    for cell in nb.cells
    if cell.cell_type == "code"
    for out in cell.get("outputs", [])
    if out.get("output_type") == "error"
  ]
  assert not errors


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_committed_notebook_is_generated_and_has_no_outputs(name):
  committed = nbformat.read(NOTEBOOKS / name, as_version=4)
  nbformat.validate(committed)
  for cell in committed.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
        f"{name} cell {cell.id} holds outputs: commit notebooks without them"
      )
  source = NOTEBOOKS / name.replace(".ipynb", ".py")
  generated = jupytext.read(source)

  def summary(nb):
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]

  assert summary(committed) == summary(generated), (
    f"{name} differs from {source.name}: run `jupytext --sync notebooks/{source.name}`"
  )
  assert committed.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"


def test_a_failing_cell_fails_the_run(kernel_manager_factory, tmp_path):
  nb = nbformat.v4.new_notebook()
  nb.cells = [
    nbformat.v4.new_code_cell("x = 1"),
    nbformat.v4.new_code_cell("raise ValueError('boom')"),
    nbformat.v4.new_code_cell("y = 2"),
  ]
  client = nbclient.NotebookClient(
    nb, km=kernel_manager_factory(), timeout=60, resources={"metadata": {"path": str(tmp_path)}}
  )
  with pytest.raises(nbclient.exceptions.CellExecutionError, match="boom"):
    client.execute()
