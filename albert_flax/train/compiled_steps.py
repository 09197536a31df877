"""Compiled steps saved to a directory and loaded by a run instead of compiling.

    python -m pretrain --config=pretrain/configs/xxlarge.py --compile_only --topology=v4-512 \
        --save_compiled=gs://bucket/compiled/xxlarge-v4-512          # on any machine with libtpu
    python -m pretrain --config=pretrain/configs/xxlarge.py --workdir=... --jax_distributed \
        --load_compiled=gs://bucket/compiled/xxlarge-v4-512          # on the pod: no compile

A saved directory holds one file per step (`jax.experimental.serialize_executable`'s bytes with
the step's argument and result trees, pickled) and `metadata.json`: the jax, jaxlib and libtpu
versions, the devices it was compiled for (platform, device kind, count, slices, torus shape),
the mesh and its device order, and the config as the program runs it (with its digest, less the
keys the steps never read). `load` refuses a directory whose metadata differs from the running
program's, naming each difference, and then checks every argument's shape, dtype and sharding
against the compiled ones: an executable is only ever used for the exact program it came from.

A TPU executable loads only where a TPU backend runs (on a CPU jax refuses to deserialize it:
"PjRtCompiler must be constructed with a Client"); the CPU backend's executables go through the
same code.
Loading runs code from the file: load only directories you wrote (as with any pickle).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import serialize_executable
from jax.sharding import Mesh

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


class CompiledMismatchError(ValueError):
  """The saved steps were compiled for another program, slice or software version."""


# ========================================================================== the metadata


def _version(distribution: str) -> str | None:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def software_versions() -> dict[str, str | None]:
  """The versions an executable is tied to (libtpu's compiler made it; jax's runtime loads it)."""
  return {name: _version(name) for name in ("jax", "jaxlib", "libtpu")}


def device_signature(devices: Sequence[jax.Device]) -> dict[str, Any]:
  """What identifies a slice from its devices, the same for a compile-only topology's devices and
  a pod's: platform, device kind, count, number of slices and the torus shape of one slice (the
  extent of the chips' coordinates; None for devices without coordinates, as CPUs)."""
  first = devices[0]
  slices = {getattr(d, "slice_index", None) or 0 for d in devices}
  coords = []
  if hasattr(first, "coords"):  # TPU devices; a CPU's have none
    coords = [tuple(d.coords) for d in devices if (getattr(d, "slice_index", None) or 0) == 0]
  shape = None
  if coords:
    extent = np.max(coords, axis=0) - np.min(coords, axis=0) + 1
    shape = "x".join(str(int(n)) for n in extent)
  return {
    "platform": first.platform,
    "device_kind": first.device_kind,
    "num_devices": len(devices),
    "num_slices": len(slices),
    "torus": shape,
  }


def config_for_digest(
  config: ml_collections.ConfigDict, keys_not_in_steps: Sequence[str] = ()
) -> dict[str, Any]:
  """The config as a plain dict, less `keys_not_in_steps` (dotted names; a group's name drops the
  whole group): what the compiled steps depend on."""
  flat: dict[str, Any] = {}

  def walk(node: Any, prefix: str) -> None:
    for key in sorted(node):
      name = f"{prefix}{key}"
      if name in keys_not_in_steps:
        continue
      if isinstance(node[key], Mapping):
        walk(node[key], name + ".")
      else:
        flat[name] = node[key]

  walk(json.loads(config.to_json_best_effort(sort_keys=True)), "")
  return flat


def metadata(
  config: ml_collections.ConfigDict,
  mesh: Mesh,
  keys_not_in_steps: Sequence[str] = (),
  topology: str | None = None,
) -> dict[str, Any]:
  """The record a saved directory carries and a loading run recomputes for itself.

  topology: the slice's name as given to --topology (for messages); the comparison uses the
  devices' signature.
  """
  devices = list(mesh.devices.flat)
  config_dict = config_for_digest(config, keys_not_in_steps)
  digest = hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()
  return {
    "format": FORMAT_VERSION,
    "versions": software_versions(),
    "topology": topology,
    "devices": device_signature(devices),
    "mesh": {k: int(v) for k, v in mesh.shape.items()},
    "mesh_device_ids": [int(d.id) for d in devices],
    "config_digest": digest,
    "config": config_dict,
  }


def differences(saved: Mapping[str, Any], running: Mapping[str, Any]) -> list[str]:
  """Each way the running program differs from the saved record, in words."""
  out = []
  if saved.get("format") != FORMAT_VERSION:
    out.append(f"format {saved.get('format')} (this version reads {FORMAT_VERSION})")
  for name, version in running["versions"].items():
    if saved["versions"].get(name) != version:
      out.append(f"{name} {saved['versions'].get(name)} when saved, {version} now")
  if saved["devices"] != running["devices"]:
    changed = [
      f"{k} {saved['devices'].get(k)!r} -> {v!r}"
      for k, v in running["devices"].items()
      if saved["devices"].get(k) != v
    ]
    out.append(
      f"devices: compiled for {saved.get('topology') or 'other devices'} "
      f"({saved['devices']['num_devices']} {saved['devices']['device_kind']}), running on "
      f"{running.get('topology') or 'these'} ({running['devices']['num_devices']} "
      f"{running['devices']['device_kind']}): " + ", ".join(changed)
    )
  if saved["mesh"] != running["mesh"]:
    out.append(f"mesh {saved['mesh']} when saved, {running['mesh']} now")
  elif saved["mesh_device_ids"] != running["mesh_device_ids"]:
    out.append("the mesh's devices are in another order")
  if saved["config_digest"] != running["config_digest"]:
    old, new = saved["config"], running["config"]
    keys = sorted(
      k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>")
    )
    shown = [f"{k} ({old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r})" for k in keys[:8]]
    more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
    out.append("config: " + ", ".join(shown) + more)
  return out


# ========================================================================== saving and loading


def save(path: str, compiled: Mapping[str, jax.stages.Compiled], record: Mapping[str, Any]) -> None:
  """Write each compiled step (`{name: Compiled}`) and the metadata to the directory `path`
  (local or gs://). metadata.json is written last: a directory without it is incomplete."""
  directory = epath.Path(path)
  directory.mkdir(parents=True, exist_ok=True)
  (directory / METADATA_FILE).unlink(missing_ok=True)
  for name, executable in compiled.items():
    payload, in_tree, out_tree = serialize_executable.serialize(executable)
    (directory / f"{name}.pkl").write_bytes(pickle.dumps((payload, in_tree, out_tree)))
  record = dict(record, steps=sorted(compiled))
  (directory / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_metadata(path: str) -> dict[str, Any]:
  file = epath.Path(path) / METADATA_FILE
  if not file.exists():
    raise FileNotFoundError(
      f"--load_compiled={path}: no {METADATA_FILE} there (not a directory written by "
      "--compile_only --save_compiled, or an interrupted save)"
    )
  return json.loads(file.read_text())


def _check_arguments(name: str, executable: jax.stages.Compiled, args: tuple) -> None:
  """Every argument's shape, dtype and sharding as compiled, else an error naming the first one
  that differs (jax would refuse the call later, with less to go on)."""
  infos = jax.tree.leaves_with_path(executable.args_info[0])
  shardings = jax.tree.leaves(executable.input_shardings[0])
  given = jax.tree.leaves(args)
  if not len(infos) == len(shardings) == len(given):
    raise CompiledMismatchError(
      f"{name}: compiled for {len(infos)} argument arrays, the run has {len(given)}"
    )
  for (path, info), compiled_sharding, arg in zip(infos, shardings, given, strict=True):
    where = jax.tree_util.keystr(path)
    if info.shape != arg.shape or info.dtype != arg.dtype:
      raise CompiledMismatchError(
        f"{name}: argument {where} was compiled as {info.dtype}{list(info.shape)}, the run "
        f"has {arg.dtype}{list(arg.shape)}"
      )
    sharding = getattr(arg, "sharding", None)
    if sharding is not None and not compiled_sharding.is_equivalent_to(sharding, arg.ndim):
      raise CompiledMismatchError(
        f"{name}: argument {where} was compiled with sharding {compiled_sharding}, the run "
        f"has {sharding}"
      )


def load(
  path: str,
  running: Mapping[str, Any],
  arguments: Mapping[str, tuple],
) -> dict[str, jax.stages.Compiled]:
  """The saved steps `{name: Compiled}`, after checking them against the running program.

  running: `metadata(...)` of the running program. arguments: {step name: its abstract
  arguments (ShapeDtypeStructs with shardings)}, every step the run needs.
  Raises CompiledMismatchError naming each difference.
  """
  saved = read_metadata(path)
  problems = differences(saved, running)
  missing = sorted(set(arguments) - set(saved.get("steps", ())))
  if missing:
    problems.append(f"no saved {', '.join(missing)} (saved: {', '.join(saved.get('steps', ()))})")
  if problems:
    raise CompiledMismatchError(
      f"--load_compiled={path} was compiled for another program; not using it: "
      + "; ".join(problems)
      + ". Compile again (--compile_only --save_compiled) or run without --load_compiled."
    )
  loaded = {}
  for name, args in arguments.items():
    payload, in_tree, out_tree = pickle.loads((epath.Path(path) / f"{name}.pkl").read_bytes())
    executable = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    _check_arguments(name, executable, args)
    loaded[name] = executable
  return loaded
