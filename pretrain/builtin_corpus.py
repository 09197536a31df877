"""The built-in corpus: docstrings and documentation of the installed Python standard library.

It needs no download, so a pretraining run (or a test, or a notebook) works anywhere. Documents:
one per module (its docstring and its functions' docstrings), one per class (its docstring and its
methods' docstrings), and one per topic of `pydoc_data.topics` (the language reference that
`help()` shows). The sources are parsed with `ast`, never imported (importing `antigravity` opens a
browser). Order is deterministic: sorted paths, then source order.

Building takes some seconds, so the result is cached as a text file in the original format (one
sentence per line, blank line between documents) under `cache_dir` (default
`$ALBERT_FLAX_CACHE`, else `$XDG_CACHE_HOME/albert_flax`, else `~/.cache/albert_flax`).
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
import tempfile
from collections.abc import Iterator

from pretrain import corpus

# Bump when the extraction changes, so stale caches are not reused.
_FORMAT_VERSION = 1
# Directories of the standard library that hold tests, test data or third-party code.
_SKIP_DIRS = frozenset(
  {
    "test",
    "tests",
    "idle_test",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "lib2to3",
    "ensurepip",
  }
)


def default_cache_dir() -> str:
  """`$ALBERT_FLAX_CACHE`, else `$XDG_CACHE_HOME/albert_flax`, else `~/.cache/albert_flax`."""
  if os.environ.get("ALBERT_FLAX_CACHE"):
    return os.environ["ALBERT_FLAX_CACHE"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "albert_flax")


def _stdlib_files() -> list[str]:
  root = sysconfig.get_paths()["stdlib"]
  out = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
    out.extend(
      os.path.join(dirpath, f)
      for f in sorted(filenames)
      if f.endswith(".py") and not f.startswith("test_")
    )
  return sorted(out)


def _doc_sentences(node: ast.AST) -> list[str]:
  doc = ast.get_docstring(node, clean=True)
  if not doc:
    return []
  # Interactive examples are code, not prose.
  lines = [ln for ln in doc.splitlines() if not ln.lstrip().startswith((">>>", "... "))]
  return corpus.text_to_sentences("\n".join(lines))


def _documents_of_module(tree: ast.Module) -> Iterator[list[str]]:
  module_doc = _doc_sentences(tree)
  classes = []
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      module_doc.extend(_doc_sentences(node))
    elif isinstance(node, ast.ClassDef):
      classes.append(node)
  yield module_doc
  for cls in classes:
    doc = _doc_sentences(cls)
    for node in cls.body:
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        doc.extend(_doc_sentences(node))
    yield doc


def iter_documents() -> Iterator[list[str]]:
  """Yields the built-in corpus's documents (lists of sentences) with at least 2 sentences."""
  for path in _stdlib_files():
    try:
      with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    except (SyntaxError, ValueError, OSError):
      continue  # A file of the install this Python cannot parse is not prose we need.
    for doc in _documents_of_module(tree):
      if len(doc) >= 2:
        yield doc
  try:
    from pydoc_data import topics  # The language reference, as `help()` shows it.
  except ImportError:
    return
  for key in sorted(topics.topics):
    # Indented lines are code samples and grammar; keep the prose.
    text = "\n".join(ln for ln in topics.topics[key].splitlines() if not ln.startswith((" ", "\t")))
    doc = corpus.text_to_sentences(text)
    if len(doc) >= 2:
      yield doc


def _cache_key() -> str:
  stdlib = sysconfig.get_paths()["stdlib"]
  raw = f"{_FORMAT_VERSION}|{sys.version}|{stdlib}".encode()
  return hashlib.sha1(raw).hexdigest()[:12]


def builtin_corpus_path(cache_dir: str | None = None) -> str:
  """Path of the built-in corpus as a text file, built (a few seconds) on first use.

  Raises:
    ValueError: if the standard library yields no documents (an install without sources).
  """
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(
    cache_dir,
    f"builtin_corpus_py{sys.version_info.major}{sys.version_info.minor}_{_cache_key()}.txt",
  )
  if os.path.exists(path) and os.path.getsize(path) > 0:
    return path
  os.makedirs(cache_dir, exist_ok=True)
  count = 0
  # Written to a temporary file and renamed: concurrent builders (several processes) never see
  # a half-written cache.
  fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".builtin_corpus.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      for doc in iter_documents():
        # A sentence is one line: no line breaks inside it.
        f.write("\n".join(" ".join(s.split()) for s in doc))
        f.write("\n\n")
        count += 1
    if count == 0:
      raise ValueError(
        f"the built-in corpus is empty: no docstrings found under "
        f"{sysconfig.get_paths()['stdlib']!r}"
      )
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def builtin_source(cache_dir: str | None = None) -> corpus.TextFileSource:
  """The built-in corpus as a document source (one file, shared among processes by document)."""
  return corpus.TextFileSource(
    [builtin_corpus_path(cache_dir)],
    shard_by="document",
    name="builtin corpus (Python standard library docstrings)",
  )


if __name__ == "__main__":
  print(builtin_corpus_path())
