"""Runs many command lines of the programs cheaply, for tests/test_cli_usage.py.

    python tests/cli_usage_helper.py CASES.json RESULTS.json

CASES.json: a list of {"program": "pretrain", "args": [...], "env": {...}, "cwd": DIR,
"block": [module names that fail to import]}. The libraries are imported once here, then each
case runs in a forked child as `python -m <program> <args>` would run it (runpy), with its
stdout and stderr captured; RESULTS.json gets {"status", "stdout", "stderr"} per case. jax's
backends are never started here, so each child starts its own (with the case's XLA_FLAGS).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import tempfile
import traceback

# What every case imports anyway, once, before any fork.
import absl.flags  # noqa: F401
import jax  # noqa: F401
import ml_collections  # noqa: F401

import albert_flax  # noqa: F401
import finetune.train  # noqa: F401
import pretrain.train  # noqa: F401

TIMEOUT_S = 180


def _child(case: dict, out: str, err: str) -> None:
  try:
    os.chdir(case.get("cwd") or os.getcwd())
    os.environ.update(case.get("env") or {})
    for name in case.get("block") or ():
      sys.modules[name] = None  # `import name` now raises ImportError
    for fd, path in ((1, out), (2, err)):
      handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
      os.dup2(handle, fd)
    signal.alarm(TIMEOUT_S)
    sys.argv = [case["program"], *case["args"]]
    runpy.run_module(case["program"], run_name="__main__", alter_sys=True)
    code = 0
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  except BaseException:
    traceback.print_exc()
    code = 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


def main(cases_path: str, results_path: str) -> None:
  with open(cases_path) as f:
    cases = json.load(f)
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for i, case in enumerate(cases):
      out, err = os.path.join(tmp, f"{i}.out"), os.path.join(tmp, f"{i}.err")
      pid = os.fork()
      if pid == 0:
        _child(case, out, err)
      _, status = os.waitpid(pid, 0)
      code = os.waitstatus_to_exitcode(status)
      with open(out, errors="replace") as f_out, open(err, errors="replace") as f_err:
        results.append({"status": code, "stdout": f_out.read(), "stderr": f_err.read()})
  with open(results_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main(*sys.argv[1:3])
