"""The local Cloud Storage server (tests/gcs_server.py) answers every client the gs:// code uses.

Each check reads back through another route than it wrote (the server's own listing, another
process, another client), so a client that silently wrote to the local disk or to a cache fails.
"""

from __future__ import annotations

import os
import subprocess
import sys

import fsspec
import numpy as np
import pytest


def test_epath_reads_writes_lists_and_renames_on_the_server(gcs_server, gcs_path):
  from etils import epath

  prefix = os.fspath(gcs_path).removeprefix(f"gs://{gcs_server.bucket}/")
  (gcs_path / "a" / "one.txt").write_text("one")
  (gcs_path / "a" / "two.bin").write_bytes(b"\x00\x01")
  assert gcs_server.object_names(prefix) == [f"{prefix}/a/one.txt", f"{prefix}/a/two.bin"]
  # gs:// goes through gcsfs, not tf.io.gfile (whose endpoint cannot be pointed here).
  assert type(gcs_path._backend).__name__ == "_FileSystemSpecBackend"

  assert (gcs_path / "a" / "one.txt").read_text() == "one"
  assert (gcs_path / "a" / "two.bin").read_bytes() == b"\x00\x01"
  assert (gcs_path / "a").is_dir() and (gcs_path / "a" / "one.txt").exists()
  assert not (gcs_path / "a" / "three.txt").exists()
  assert sorted(p.name for p in (gcs_path / "a").glob("*.txt")) == ["one.txt"]
  assert sorted(p.name for p in (gcs_path / "a").iterdir()) == ["one.txt", "two.bin"]

  (gcs_path / "a" / "one.txt").rename(gcs_path / "b.txt")
  assert gcs_server.object_names(prefix) == [f"{prefix}/a/two.bin", f"{prefix}/b.txt"]
  assert epath.Path(os.fspath(gcs_path / "b.txt")).read_text() == "one"

  with (gcs_path / "big.bin").open("wb") as f:  # past gcsfs's one-shot limit: a resumable upload
    f.write(b"x" * (6 << 20))
  with (gcs_path / "big.bin").open("rb") as f:
    f.seek((6 << 20) - 3)
    assert f.read() == b"xxx"

  (gcs_path / "a").rmtree()
  assert gcs_server.object_names(prefix) == [f"{prefix}/b.txt", f"{prefix}/big.bin"]


def test_create_if_absent_is_refused_when_the_object_exists(gcs_path):
  """fsspec's pipe_file(mode="create") sends ifGenerationMatch=0: the server must refuse the
  second create (what a lock on a bucket relies on)."""
  fs, path = fsspec.core.url_to_fs(os.fspath(gcs_path / "LOCK"))
  fs.pipe_file(path, b"first", mode="create")
  with pytest.raises(FileExistsError):
    fs.pipe_file(path, b"second", mode="create")
  assert (gcs_path / "LOCK").read_bytes() == b"first"


def test_orbax_saves_and_restores_a_pytree_on_the_server(gcs_server, gcs_path):
  """Orbax writes its metadata through epath and its arrays through tensorstore's gcs driver."""
  import orbax.checkpoint as ocp

  tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array(7, np.int32)}
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(gcs_path / "ckpt", tree)
    checkpointer.wait_until_finished()
    prefix = os.fspath(gcs_path / "ckpt").removeprefix(f"gs://{gcs_server.bucket}/")
    names = gcs_server.object_names(prefix)
    assert any(n.endswith("manifest.ocdbt") for n in names), names  # tensorstore's data
    assert any(n.endswith("_METADATA") for n in names), names
    restored = checkpointer.restore(gcs_path / "ckpt")
  np.testing.assert_array_equal(restored["w"], tree["w"])
  assert int(restored["step"]) == 7


def test_a_subprocess_inherits_the_server(gcs_path):
  (gcs_path / "from_parent.txt").write_text("parent")
  code = (
    "import sys; from etils import epath; d = epath.Path(sys.argv[1]); "
    "print((d / 'from_parent.txt').read_text()); (d / 'from_child.txt').write_text('child')"
  )
  out = subprocess.run(
    [sys.executable, "-c", code, os.fspath(gcs_path)],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip() == "parent"
  assert (gcs_path / "from_child.txt").read_text() == "child"
