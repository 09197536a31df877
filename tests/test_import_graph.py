"""The import graph of our packages stays acyclic, and our modules import each other at the top.

An import inside a function hides a dependency from a reader (and from this check); it is kept
only for an optional third-party package. Parsing only: nothing is imported, no jax is started.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("albert_flax", "pretrain", "finetune")


def _modules() -> dict[str, Path]:
  out = {}
  for package in PACKAGES:
    for path in (REPO / package).rglob("*.py"):
      parts = path.relative_to(REPO).with_suffix("").parts
      out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return out


def _imported(name: str, node: ast.AST, is_package: bool, modules: dict) -> list[str]:
  """Our modules an import statement of module `name` names (a package for `from p import x`
  unless x is itself a module)."""
  if isinstance(node, ast.Import):
    targets = [alias.name for alias in node.names]
  else:
    base = node.module or ""
    if node.level:
      parts = name.split(".") if is_package else name.split(".")[:-1]
      parts = parts[: len(parts) - (node.level - 1)]
      base = ".".join(parts + ([node.module] if node.module else []))
    targets = [
      f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
    ]
  found = []
  for target in targets:
    if target.split(".")[0] not in PACKAGES:
      continue
    while target not in modules and "." in target:
      target = target.rsplit(".", 1)[0]
    if target != name:
      found.append(target)
  return found


def _graph() -> tuple[dict[str, set[str]], list[str]]:
  """(module -> our modules it imports, in-function imports of our modules as 'module: line')."""
  modules = _modules()
  graph: dict[str, set[str]] = {name: set() for name in modules}
  in_functions = []
  for name, path in modules.items():
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def visit(node: ast.AST, in_function: bool, name=name, path=path) -> None:
      for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
          targets = _imported(name, child, path.name == "__init__.py", modules)
          graph[name].update(t for t in targets if not t.startswith(name + "."))
          if targets and in_function:
            in_functions.append(f"{name}:{child.lineno}")
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
          continue  # annotations only
        inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        visit(child, inner)

    visit(tree, False)
  return graph, in_functions


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan's algorithm)."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  found = []

  def connect(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        connect(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      connect(v)
  return found


def test_no_import_cycle_among_our_modules():
  graph, _ = _graph()
  assert len(graph) > 50  # the walk found the tree
  assert _cycles(graph) == []


def test_our_modules_import_each_other_at_module_level():
  _, in_functions = _graph()
  assert in_functions == []


def test_the_check_sees_a_cycle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []
