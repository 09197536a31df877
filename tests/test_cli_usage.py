"""A user's mistakes through both command lines: each is one line naming the problem, exit status
2 (EXIT_USAGE: distinct from a crash), no traceback (--verbose shows it); --help lists the
flags and every config key. The cases run in one helper process that imports the libraries
once and forks per case (tests/cli_usage_helper.py); each fails before anything is compiled."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import finetune_testdata as td
import pytest

from albert_flax.train import program

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USAGE = program.EXIT_USAGE


def _cases(d: dict[str, str]) -> list[tuple[str, str, list[str], dict, int, list[str]]]:
  """(id, program, args, options, expected status, words of the message)."""
  spm = f"--config.tokenizer.spm_model={d['spm']}"
  small = [spm, "--config.batch_size=8", "--config.max_seq_length=16"]
  small += ["--config.max_predictions_per_seq=2"]
  run = "RUN"  # each case's own --workdir (below)
  glue = ["--config=glue", "--config.task=sst2", f"--config.init_from={d['ckpt']}"]
  glue += ["--config.max_seq_length=32", "--config.batch_size=8", "--config.eval_batch_size=8"]
  data = f"--config.data_dir={d['sst2']}"
  three = {"env": {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}}
  # fmt: off
  cases = [
    ("p-positional", "pretrain", ["runs/foo"], {}, USAGE,
     ["unexpected argument 'runs/foo'", "--workdir=runs/foo"]),
    ("p-no-config-file", "pretrain", [run, "--config=nope.py"], {}, USAGE,
     ["config file 'nope.py' not found", "base, large, tiny"]),
    ("p-unknown-key", "pretrain", [run, "--config.num_train_step=3"], {}, USAGE,
     ["unknown config key 'num_train_step'", "did you mean 'num_train_steps'"]),
    ("p-vocab-override", "pretrain", [run, "--config.model_overrides.vocab_size=9"], {}, USAGE,
     ["model_overrides.vocab_size cannot be set", "comes from the tokenizer"]),
    ("p-negative-lr", "pretrain", [run, "--config.learning_rate=-1"], {}, USAGE,
     ["learning_rate must be a positive number"]),
    ("p-glob-matches-nothing", "pretrain",
     [run, f"--config.data.train_files={d['tmp']}/none*.txt", *small], {}, USAGE,
     ["none*.txt"]),
    ("p-corpus-is-a-folder", "pretrain",
     [run, f"--config.data.train_files={d['folder']}", *small], {}, USAGE,
     [d["folder"], "a folder: give its files"]),
    ("p-blank-corpus", "pretrain", [run, f"--config.data.train_files={d['blank']}"], {}, USAGE,
     ["holds no text", d["blank"]]),
    ("p-binary-corpus", "pretrain", [run, f"--config.data.train_files={d['binary']}"], {}, USAGE,
     [d["binary"]]),
    ("p-spm-not-a-model", "pretrain", [run, f"--config.tokenizer.spm_model={d['blank']}"], {},
     USAGE, [f"tokenizer.spm_model '{d['blank']}' is not a SentencePiece model"]),
    ("p-workdir-is-a-file", "pretrain", [f"--workdir={d['file']}", *small], {}, USAGE,
     ["is a file, not a folder", d["file"]]),
    ("p-changed-config", "pretrain", [f"--workdir={d['oldrun']}", *small], {}, USAGE,
     ["holds a run started with another config", "learning_rate"]),
    ("p-init-from-missing", "pretrain", [run, "--config.init_from=/no/such/run", *small], {},
     USAGE, ["init_from '/no/such/run': no such file or directory"]),
    ("p-init-from-not-a-checkpoint", "pretrain",
     [run, f"--config.init_from={d['empty']}", *small], {}, USAGE,
     ["No ALBERT", d["empty"]]),
    ("p-batch-vs-devices", "pretrain", [run, *small, "--config.batch_size=8"], three, USAGE,
     ["batch_size 8", "multiple"]),
    ("p-mesh-too-big", "pretrain", [run, *small, "--config.mesh.data=4"], {}, USAGE,
     ["mesh", "devices"]),
    ("p-unknown-topology", "pretrain", ["--compile_only", "--topology=v9:2x2"], {}, USAGE,
     ["v9:2x2"]),
    ("p-compile-only-without-libtpu", "pretrain", ["--compile_only", "--topology=v4:2x2x1"],
     {"block": ["libtpu"]}, USAGE, ["needs libtpu", "pip install"]),
    ("p-verbose", "pretrain", [run, "--verbose", f"--config.data.train_files={d['blank']}"],
     {}, USAGE, ["Traceback", "holds no text"]),
    ("p-help", "pretrain", ["--help"], {}, program.EXIT_OK,
     ["--config.learning_rate=0.001", "peak learning rate", "--config.data.train_files=builtin",
      "--workdir=./runs/tiny", "--compile_only", "other configs", "base, large"]),
    ("f-help", "finetune", ["--help"], {}, program.EXIT_OK,
     ["--config.init_from=", "any path af.from_pretrained takes", "--config.task=mnli",
      "--config.per_task.TASK.KEY", "sst2: batch_size=32", "clue, cmrc, ner, race, squad"]),
    ("f-help-squad", "finetune", ["--config=squad", "--help"], {}, program.EXIT_OK,
     ["--config.doc_stride=128", "--config.version=1.1"]),
    # The repository-relative path the docs print works from any directory (cwd: a tmp dir).
    ("f-help-from-elsewhere", "finetune", ["--config=finetune/configs/ner.py", "--help"], {},
     program.EXIT_OK, ["--config.entity_types=PER,ORG,LOC,MISC"]),
    ("f-positional", "finetune", ["--config=glue", "runs/x"], {}, USAGE,
     ["unexpected argument 'runs/x'"]),
    ("f-unknown-config-name", "finetune", [run, "--config=sst2"], {}, USAGE,
     ["config file 'sst2' not found", "clue, cmrc, glue, ner, race, squad"]),
    ("f-no-workdir", "finetune", [*glue, data], {}, USAGE, ["--workdir is required"]),
    ("f-unknown-task", "finetune", [run, *glue, "--config.task=sst-2"], {}, USAGE,
     ["unknown task 'sst-2'"]),
    ("f-negative-lr", "finetune", [run, *glue, data, "--config.learning_rate=-1e-3"], {},
     USAGE, ["learning_rate must be a positive number"]),
    ("f-longer-than-the-model", "finetune", [run, *glue, data, "--config.max_seq_length=128"],
     {}, USAGE, ["max_seq_length 128 exceeds the model's max_position_embeddings 64"]),
    ("f-init-from-missing", "finetune", [run, *glue, data, "--config.init_from=/no/such/run"],
     {}, USAGE, ["init_from '/no/such/run': no such file or directory"]),
    ("f-init-from-not-a-checkpoint", "finetune",
     [run, *glue, data, f"--config.init_from={d['empty']}", f"--config.spm_model={d['spm']}"],
     {}, USAGE, ["No ALBERT", d["empty"]]),
    ("f-no-data", "finetune",
     [run, *glue, "--config.tfds_download=False", f"--config.tfds_data_dir={d['empty']}"], {},
     USAGE, ["no data", "--config.data_dir"]),
    ("f-tsv-missing-column", "finetune", [run, *glue, f"--config.data_dir={d['no_label']}"],
     {}, USAGE, ["train.tsv:1", "no column ['label']"]),
    ("f-tsv-unknown-label", "finetune", [run, *glue, f"--config.data_dir={d['bad_label']}"],
     {}, USAGE, ["train.tsv:3", "label '7' is not one of"]),
    ("f-batch-vs-devices", "finetune", [run, *glue, data], three, USAGE,
     ["batch_size 8", "3"]),
    ("f-mesh-too-big", "finetune", [run, *glue, data, "--config.mesh.data=4"], {}, USAGE,
     ["mesh", "devices"]),
    ("f-unknown-topology", "finetune", [*glue, "--compile_only", "--topology=v4-3"], {}, USAGE,
     ["v4-3"]),
  ]
  # fmt: on
  return [
    (name, prog, [f"--workdir={d['tmp']}/runs/{name}" if a == run else a for a in args], *rest)
    for name, prog, args, *rest in cases
  ]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
  tmp = tmp_path_factory.mktemp("cli")
  d = {"tmp": str(tmp), "spm": td.make_tokenizer(str(tmp)), "ckpt": td.tiny_checkpoint(tmp)}
  d["sst2"] = td.write_sentiment(str(tmp / "SST-2"), n_train=8, n_dev=4)
  d["no_label"] = os.path.dirname(td.write(str(tmp / "nolabel" / "train.tsv"), "sentence\tlbl\n"))
  d["bad_label"] = os.path.dirname(
    td.write(str(tmp / "badlabel" / "train.tsv"), td.tsv(("sentence", "label"), ("a", 0), ("b", 7)))
  )
  for name in ("folder", "empty"):
    (tmp / name).mkdir()
    d[name] = str(tmp / name)
  d["blank"] = td.write(str(tmp / "blank.txt"), "  \n\n \t \n")
  (tmp / "binary.bin").write_bytes(bytes(range(256)) * 64)
  d["binary"] = str(tmp / "binary.bin")
  d["file"] = td.write(str(tmp / "a_file"), "not a folder\n")
  old = tmp / "oldrun"
  td.write(str(old / "train_config.json"), json.dumps({"learning_rate": 0.5}))
  status = {"status": "interrupted", "step": 10, "total_steps": 600}
  td.write(str(old / "run_status.json"), json.dumps(status))
  d["oldrun"] = str(old)
  return d


@pytest.fixture(scope="module")
def results(inputs, tmp_path_factory) -> dict[str, dict]:
  """Every case's {"status", "stdout", "stderr"}, run once for the module."""
  tmp = tmp_path_factory.mktemp("cli_runs")
  cases = _cases(inputs)
  spec = [
    {"program": p, "args": a, "env": o.get("env", {}), "block": o.get("block", [])}
    for _, p, a, o, _, _ in cases
  ]
  (tmp / "cases.json").write_text(json.dumps(spec))
  helper = os.path.join(REPO, "tests", "cli_usage_helper.py")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
  env.pop("JAX_PLATFORMS", None)  # the programs choose the CPU themselves (no libtpu noise)
  subprocess.run(
    [sys.executable, helper, str(tmp / "cases.json"), str(tmp / "results.json")],
    cwd=str(tmp),
    env=env,
    check=True,
    timeout=1200,
  )
  out = json.loads((tmp / "results.json").read_text())
  return {case[0]: result for case, result in zip(cases, out)}


CASE_IDS = [c[0] for c in _cases({k: "x" for k in (
  "tmp spm ckpt sst2 no_label bad_label folder empty blank binary file oldrun".split()
)})]  # fmt: skip


@pytest.mark.parametrize("case", CASE_IDS)
def test_a_mistake_is_one_line_without_a_traceback(inputs, results, case):
  _, _, _, _, status, words = next(c for c in _cases(inputs) if c[0] == case)
  got = results[case]
  shown = (
    f"status {got['status']}\nstdout: {got['stdout'][-1500:]}\nstderr: {got['stderr'][-3000:]}"
  )
  assert got["status"] == status, shown
  if "-help" in case:  # the help on stdout, nothing else
    for word in words:
      assert word in got["stdout"], f"{word!r} not in the help\n{shown}"
    assert "error" not in got["stderr"], shown
    return
  errors = [line for line in got["stderr"].splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, shown
  verbose = case == "p-verbose"  # the traceback, then the same one line
  message = got["stderr"] if verbose else got["stderr"][got["stderr"].index("error: ") :]
  for word in words:
    assert word in message, f"{word!r} not in the message\n{shown}"
  if not verbose:
    assert "Traceback" not in got["stderr"] + got["stdout"], shown
  # On a machine without a TPU, libtpu's start-up noise never shows.
  for noise in ("INVALID_ARGUMENT", "host bounds", "libtpu_lockfile", "backend 'tpu'"):
    assert noise not in got["stderr"], shown


def test_every_config_key_has_a_meaning_in_the_help():
  from albert_flax.train import config_help

  configs = [os.path.join(REPO, "pretrain", "configs", f"{n}.py") for n in ("tiny", "base")]
  configs += [
    os.path.join(REPO, "finetune", "configs", f"{n}.py")
    for n in ("glue", "squad", "race", "ner", "clue", "cmrc")
  ]
  for path in configs:
    entries = config_help.describe_config(program._load_config_file(path), path)
    # An entry is "  --config.KEY=VALUE  meaning"; a long KEY=VALUE has its meaning below it.
    alone = [
      e
      for i, e in enumerate(entries)
      if e.startswith("  --config.")
      and len(e.split()) == 1
      and (i + 1 == len(entries) or not entries[i + 1].startswith(" " * 40))
    ]
    assert not alone, f"{path}: keys without a meaning: {alone}"


class XlaRuntimeError(RuntimeError):
  """Named as jax's runtime error is: what the report recognizes."""


def test_out_of_memory_says_what_to_change_and_a_bug_keeps_its_traceback():
  import numpy as np

  from albert_flax.train import settings

  message = program.mistake_message(
    XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.1GiB.")
  )
  assert message.startswith("out of memory (RESOURCE_EXHAUSTED")
  assert "--config.batch_size" in message and "grad_accum_steps" in message
  assert "remat=full" in message
  assert program.mistake_message(MemoryError()).startswith("out of memory")
  # Errors that are not a user's get no one-line report, so their traceback shows.
  assert program.mistake_message(KeyError("step")) is None
  assert program.mistake_message(XlaRuntimeError("INTERNAL: compiler crashed")) is None
  with pytest.raises(ValueError) as inside_a_library:
    np.zeros(3).reshape(2)
  assert program.mistake_message(inside_a_library.value) is None
  with pytest.raises(ValueError) as ours:
    settings.check(["x must be positive"], "test")
  assert program.mistake_message(ours.value) == "Invalid test config: x must be positive"


def test_a_tokenizer_smaller_than_asked_is_said_in_one_line(tmp_path, caplog):
  import logging

  from albert_flax.tokenization import train_tokenizer

  corpus = td.write(str(tmp_path / "small.txt"), "A few words, said twice.\n" * 2)
  with caplog.at_level(logging.WARNING, logger="albert_flax"):
    path = train_tokenizer(corpus, 2000, str(tmp_path / "sp"), hard_vocab_limit=False)
  size = __import__("albert_flax").AlbertTokenizer(path).vocab_size
  said = [r.getMessage() for r in caplog.records if "asked" in r.getMessage()]
  assert size < 2000 and len(said) == 1
  assert f"has {size} pieces, not the 2000 asked" in said[0] and "larger corpus" in said[0]


def test_install_hints_work_as_printed_and_a_failed_export_leaves_nothing(tmp_path, monkeypatch):
  import jax
  import jax.numpy as jnp
  from conftest import TINY

  import albert_flax as af
  from albert_flax import install_hints

  # This checkout is where albert_flax comes from: the hint installs its extra, not a
  # distribution the package index does not have.
  hint = install_hints.pip_install("tf")
  assert hint == f"pip install -e '{REPO}[tf]'"
  model = af.AlbertModel(af.AlbertConfig(**TINY))
  params = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
  monkeypatch.setitem(sys.modules, "tensorflow", None)  # TensorFlow not installed
  with pytest.raises(ImportError, match=f"needs TensorFlow: `{hint}`".replace("[", r"\[")):
    af.save_pretrained(tmp_path / "tf", model, params, format="tf")
  assert not (tmp_path / "tf").exists()


def test_log_lines_name_a_checkpoint_problem_briefly_and_cards_the_builtin_corpus():
  from albert_flax.checkpoints import model_card, short_reason

  spec = '{"driver":"zarr","kvstore":{"driver":"ocdbt","base":{"driver":"file","path":"/w/"}}}'
  error = ValueError(f"Error opening driver: reading /w/checkpoints/20/state: {spec} [at x]\nmore")
  assert short_reason(error) == (
    "ValueError: Error opening driver: reading /w/checkpoints/20/state: {...} [at x]"
  )
  data = model_card._training_data({"data": {"train_files": "builtin"}})
  assert data == ["the built-in corpus (the Python standard library's docstrings)"]
