"""Paths that may be local or in Cloud Storage (gs://): one path library, `etils.epath`.

Every path we take (a saved model, a workdir, a tokenizer file, a corpus) may be a gs:// URL, or
any scheme etils.epath reads (s3://, ...); TPU pods keep their workdirs in buckets. All file I/O
goes through `epath.Path` (orbax's own path library), so one code path serves both; this module
holds only what epath does not say itself:

- `path(p)`: an epath.Path; local paths made absolute (orbax requires that), URLs as they are
  (epath's absolute() would glue the working directory onto "gs://...").
- Atomic writes (`replacing`, and on it `write_text`, `write_bytes`, `write_json`): a reader sees
  the old content or the new, never half. Locally that is a temporary sibling renamed over the
  target. In a bucket an object upload is already atomic (the object appears when its upload
  completes), and a rename there is a copy and a delete (two steps, not one), so the object is
  written in place.
- `glob(pattern)`: a pattern with wildcards anywhere (epath globs below one folder only).
- `open_text`, `read_text`: UTF-8 whatever the locale (fsspec's text mode uses the locale's).
- No stale listings once `configure_storage()` ran (see below): what another host wrote is seen
  at once.
- `create_new(p, data)`: create `p` only if it does not exist, atomically (the workdir lock).
  epath has no exclusive mode; fsspec's `pipe_file(mode="create")` is one: O_EXCL locally,
  `ifGenerationMatch=0` (a generation precondition, enforced by the server) in a bucket.

The gs:// backend: `configure_storage()`, which the programs call at their start and a library
user calls before using any path (etils reads EPATH_USE_TF once, at its first path operation);
importing albert_flax changes nothing in the process:
- EPATH_USE_TF=false unless set: with TensorFlow installed, epath reads gs:// through tf.io.gfile
  unless EPATH_USE_TF=false; tf.io.gfile's Cloud Storage endpoint is compiled in, so that route
  cannot be pointed at a local server and is not what our tests exercise. false gives fsspec +
  gcsfs (a dependency: tested against a local Cloud Storage server, see tests/gcs_server.py) for
  the whole process, orbax's paths included. Set EPATH_USE_TF=true to keep tf.io.gfile.
- No stale listings: gcsfs caches folder listings for ever, updating them on its own writes only,
  so a file that another process (another host of a pod, or tensorstore writing orbax's arrays)
  adds to a listed folder would stay invisible to exists(), iterdir() and glob. The cache is
  turned off (fsspec's "gcs" config): every lookup asks the bucket.
"""

from __future__ import annotations

import contextlib
import glob as glob_module
import io
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import fsspec.config
from etils import epath

PathLike = str | os.PathLike


def configure_storage() -> None:
  """Set up the gs:// backend for this process (see the module docstring): fsspec + gcsfs unless
  EPATH_USE_TF is set, and no listing cache. Call it before any path is used: etils reads
  EPATH_USE_TF once. Idempotent; settings made before (EPATH_USE_TF, fsspec's "gcs"
  use_listings_cache) are kept."""
  os.environ.setdefault("EPATH_USE_TF", "false")
  fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)


def is_local(p: PathLike) -> bool:
  """Whether `p` is on this machine's file system (not a URL such as gs://bucket/...)."""
  return fsspec.utils.get_protocol(os.fspath(p)) in ("file", "local")


def path(p: PathLike) -> epath.Path:
  """`p` as an epath.Path: absolute when local, the URL itself otherwise."""
  result = epath.Path(os.fspath(p))
  return result.expanduser().absolute() if is_local(p) else result


@contextlib.contextmanager
def replacing(p: PathLike, folder: bool = False) -> Iterator[epath.Path]:
  """Where to write the file (or with `folder`, the folder) `p` so that no reader sees it half
  written: `with paths.replacing(p) as tmp: write tmp`.

  Locally: a temporary sibling, renamed over `p` (an old folder there removed first) when the
  block succeeds, removed when it fails. In a bucket, where a rename is a copy and a delete:
  `p` itself (an old folder there removed first). An object appears whole when its upload
  completes, so write each file in one call (`write_bytes`); a folder's completeness is told by
  a file written after it (a run status, eval_results.json).
  """
  target = path(p)
  if not is_local(target):
    if folder and target.exists():
      target.rmtree()
    yield target
    return
  target.parent.mkdir(parents=True, exist_ok=True)  # as a bucket needs no folders
  tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
  try:
    yield tmp
    if folder and target.exists():
      target.rmtree()
    os.replace(tmp, target)
  except BaseException:
    if tmp.is_dir():
      tmp.rmtree()
    else:
      tmp.unlink(missing_ok=True)
    raise


def write_bytes(p: PathLike, data: bytes) -> None:
  """Replace the file `p` with `data` atomically (`replacing`)."""
  with replacing(p) as tmp:
    tmp.write_bytes(data)


def write_text(p: PathLike, text: str) -> None:
  """Replace the file `p` with `text` (UTF-8) atomically."""
  write_bytes(p, text.encode("utf-8"))


def write_json(p: PathLike, value: Any, **dump_args: Any) -> None:
  """Replace the file `p` with `value` as JSON (and a final newline) atomically."""
  write_text(p, json.dumps(value, **dump_args) + "\n")


def open_text(p: PathLike) -> io.TextIOWrapper:
  """The file `p` opened to read as UTF-8 text, streamed (newlines as open() reads them). Its
  text mode is ours: fsspec's would decode in the locale's encoding."""
  return io.TextIOWrapper(path(p).open("rb"), encoding="utf-8")


def read_text(p: PathLike) -> str:
  """The whole UTF-8 text of the file `p` (see `open_text`)."""
  with open_text(p) as f:
    return f.read()


def read_json(p: PathLike) -> Any:
  """The JSON value in the file `p` (UTF-8)."""
  return json.loads(read_text(p))


def glob(pattern: PathLike) -> list[str]:
  """The files and folders matching `pattern` (`*`, `?`, `[...]` anywhere in it: glob.glob
  locally, fsspec's glob in a bucket), sorted: local paths, or URLs of the same scheme."""
  pattern = os.fspath(pattern)
  if is_local(pattern):
    return sorted(glob_module.glob(pattern))
  fs, fs_pattern = fsspec.core.url_to_fs(pattern)
  return sorted(fs.unstrip_protocol(p) for p in fs.glob(fs_pattern))


def create_new(p: PathLike, data: bytes) -> bool:
  """Create the file `p` holding `data` if no file is there: True; False when one exists. One
  atomic step, locally and in a bucket, so of two processes racing exactly one gets True."""
  target = path(p)
  fs, fs_path = fsspec.core.url_to_fs(os.fspath(target))
  try:
    fs.pipe_file(fs_path, data, mode="create")
  except FileExistsError:
    return False
  return True


def move_tree(source: PathLike, target: PathLike) -> None:
  """Move the file or folder `source` to `target` (which must not exist). Locally one rename; in a
  bucket each object is copied and deleted (a bucket has no folders to rename)."""
  source, target = path(source), path(target)
  if is_local(source):
    os.replace(source, target)
    return
  fs, fs_source = fsspec.core.url_to_fs(os.fspath(source))
  fs.mv(fs_source, fsspec.core.url_to_fs(os.fspath(target))[1], recursive=True)


def hub_offline() -> bool:
  """Whether Hugging Face Hub ids must not be downloaded: HF_HUB_OFFLINE as it is now (set after
  huggingface_hub was imported too; the library reads it once, at import)."""
  from huggingface_hub import constants

  value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
  return value in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)
