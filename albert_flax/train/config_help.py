"""`--help` of the programs: their own flags and every `--config.KEY` with its value and meaning.

The meanings are the config files' own comments, so the help and the files never disagree: for
`c.KEY = value`, the comment on the statement's lines, else the comment lines right above it.
A config file's comments are read together with those of the config modules it imports from
its own package (pretrain/configs/tiny.py starts from common.py): a key's meaning comes from the
module that introduces it (a later file's comment on the same key says why it changes it).
`model_overrides.*` keys take their meaning from AlbertConfig's field comments.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import os
import re
import textwrap
import tokenize
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from albert_flax import config as config_module

_ASSIGNED_KEY = re.compile(r"^c((?:\.\w+)+)$")
_WIDTH = 100
_KEY_COLUMN = 46


def _comments_by_line(source: str) -> dict[int, str]:
  comments = {}
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      comments[token.start[0]] = token.string.lstrip("#").strip()
  return comments


def _clean(lines: Iterable[str]) -> str:
  return " ".join(" ".join(line for line in lines if not line.startswith("fmt:")).split())


def file_meanings(path: str) -> dict[str, str]:
  """KEY -> meaning of every `c.KEY = ...` statement in the config file at `path`."""
  with open(path, encoding="utf-8") as f:
    source = f.read()
  comments = _comments_by_line(source)
  lines = source.splitlines()
  meanings = {}
  for node in ast.walk(ast.parse(source)):
    if not isinstance(node, ast.Assign) or len(node.targets) != 1:
      continue
    match = _ASSIGNED_KEY.match(ast.unparse(node.targets[0]))
    if not match:
      continue
    own = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
    above = []
    n = node.lineno - 1
    while n >= 1 and lines[n - 1].strip().startswith("#"):
      above.insert(0, comments.get(n, ""))
      n -= 1
    # A section header ("# --- optimization") speaks of a key only when nothing else does.
    plain = [line for line in above if not line.startswith("---")]
    headers = [line.lstrip("- ") for line in above if line.startswith("---")]
    meaning = _clean(own) or _clean(plain) or _clean(headers)
    if meaning:
      meanings[match.group(1)[1:]] = meaning
  return meanings


def _imported_config_modules(path: str) -> list[str]:
  """The files of the modules `path` imports from its own folder (its package's configs) and
  from the library (albert_flax modules whose functions add keys)."""
  folder = os.path.dirname(os.path.abspath(path))
  package = os.path.basename(folder)
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read())
  found = []
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.ImportFrom) and node.module:
      parts = node.module.split(".")
      if parts[-1] == package:  # from pretrain.configs import common
        names = [alias.name for alias in node.names]
      elif package in parts:  # from finetune.configs.common import base_config
        names = [parts[parts.index(package) + 1]]
    for name in names:
      candidate = os.path.join(folder, f"{name}.py")
      if os.path.isfile(candidate) and candidate not in found:
        found.append(candidate)
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("albert_flax."):
      # Library modules that add keys of their own (albert_flax.train.profiling.add_config_keys)
      for alias in node.names:
        try:  # `from albert_flax.config import AlbertConfig` names a class, not a module
          spec = importlib.util.find_spec(f"{node.module}.{alias.name}")
        except ModuleNotFoundError:
          continue
        if spec is not None and spec.origin and spec.origin not in found:
          found.append(spec.origin)
  return found


def field_meanings() -> dict[str, str]:
  """AlbertConfig field -> the comment on its line in albert_flax/config.py."""
  with open(config_module.__file__, encoding="utf-8") as f:
    source = f.read()
  comments = _comments_by_line(source)
  out = {}
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ClassDef) and node.name == "AlbertConfig":
      for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
          own = [comments[n] for n in range(item.lineno, item.end_lineno + 1) if n in comments]
          out[item.target.id] = _clean(own)
  return out


def config_meanings(path: str) -> dict[str, str]:
  """KEY -> meaning for the config file at `path` and the config modules it builds on."""
  meanings: dict[str, str] = {}
  for base in _imported_config_modules(path):
    meanings.update(config_meanings(base))
  for key, meaning in file_meanings(path).items():
    meanings.setdefault(key, meaning)  # a later file's comment says why it changes the value
  return meanings


def _flatten(config: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
  for key in config.keys():
    value = config[key]
    if hasattr(value, "keys") and hasattr(value, "to_dict"):
      yield from _flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _meaning(key: str, meanings: Mapping[str, str], fields: Mapping[str, str]) -> str:
  if key in meanings:
    return meanings[key]
  head, _, last = key.rpartition(".")
  if head == "model_overrides":
    return (fields.get(last) or f"AlbertConfig.{last}") + " (unset: the preset's value)"
  parts = key.split(".")
  for n in range(len(parts) - 1, 0, -1):  # a table's rows: the table's meaning
    if ".".join(parts[:n]) in meanings:
      return meanings[".".join(parts[:n])]
  return ""


def _entry(left: str, meaning: str) -> list[str]:
  if not meaning:
    return [f"  {left}"]
  indent = " " * _KEY_COLUMN
  if len(left) + 2 > _KEY_COLUMN - 1:
    return [
      f"  {left}",
      *textwrap.wrap(meaning, _WIDTH, initial_indent=indent, subsequent_indent=indent),
    ]
  first = f"  {left}".ljust(_KEY_COLUMN)
  return textwrap.wrap(meaning, _WIDTH, initial_indent=first, subsequent_indent=indent)


def _show(value: Any) -> str:
  if value is None:
    return "None"
  if isinstance(value, tuple):
    return ",".join(map(str, value))
  return str(value)


def describe_config(config: Any, path: str) -> list[str]:
  """One entry per `--config.KEY`: KEY=VALUE and its meaning; a per-task table's rows folded
  into one line each."""
  meanings, fields = config_meanings(path), field_meanings()
  lines = []
  rows: dict[str, list[str]] = {}
  for key, value in _flatten(config):
    parts = key.split(".")
    if parts[0] == "per_task" and len(parts) == 3:
      rows.setdefault(parts[1], []).append(f"{parts[2]}={_show(value)}")
      continue
    lines += _entry(f"--config.{key}={_show(value)}", _meaning(key, meanings, fields))
  if rows:
    lines += _entry(
      "--config.per_task.TASK.KEY",
      meanings.get("per_task") or "published per-task values, used for the keys left unset",
    )
    lines += [f"      {task}: {' '.join(values)}" for task, values in rows.items()]
  return lines


def describe_flags(holders: Sequence[Any]) -> list[str]:
  """One entry per absl flag: --NAME=DEFAULT and its help."""
  lines = []
  for holder in holders:
    flag = holder._flagvalues[holder.name]  # absl's Flag: its default and help
    value = flag.default
    if value is not None and not isinstance(value, (str, int, float, bool)):
      value = getattr(flag, "config_filename", None)  # --config: its file, not its contents
    default = "" if value is None else f"={_show(value)}"
    lines += _entry(f"--{holder.name}{default}", flag.help or "")
  return lines


def other_configs(folder: str, current: str) -> list[str]:
  """The config files next to `current` (what --config may name)."""
  names = sorted(
    f[: -len(".py")]
    for f in os.listdir(folder)
    if f.endswith(".py") and not f.startswith("_") and f != "common.py"
  )
  return [n for n in names if os.path.join(folder, f"{n}.py") != os.path.abspath(current)]
