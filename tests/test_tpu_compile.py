"""The programs' steps compiled by the real TPU compiler (libtpu) for small TPU slices, on a CPU.

No TPU is needed: `jax.experimental.topologies` describes a slice's devices and the step is
compiled ahead of time. libtpu comes with the test extras; without it these tests fail (they are
not skipped). Tiny shapes keep each compile to seconds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from albert_flax import sharding
from albert_flax.train import aot, compiled_steps
from finetune import steps as finetune_steps
from finetune.configs import glue
from pretrain import steps as pretrain_steps
from pretrain.configs import base, tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pretrain_config(data=-1, fsdp=1, tensor=1, **changes):
  c = tiny.get_config()
  c.batch_size, c.max_seq_length, c.max_predictions_per_seq = 16, 32, 4
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = data, fsdp, tensor
  for key, value in changes.items():
    c[key] = value
  return c


def _shard_bytes_by_hand(args, formats) -> tuple[int, int]:
  """(unpadded, padded) bytes device 0 holds of `args`: the shard read off the sharding's
  index map, padded to the compiled layout's tiles."""
  unpadded = padded = 0
  for leaf, fmt in zip(jax.tree.leaves(args), jax.tree.leaves(formats), strict=True):
    device = leaf.sharding.mesh.devices.flat[0]
    index = leaf.sharding.devices_indices_map(leaf.shape)[device]
    shard = [len(range(*s.indices(n))) for s, n in zip(index, leaf.shape)]
    itemsize = np.dtype(leaf.dtype).itemsize
    unpadded += math.prod(shard) * itemsize
    dims = [shard[i] for i in fmt.layout.major_to_minor]
    tile = fmt.layout.tiling[0] if fmt.layout.tiling else ()
    dims = [1] * (len(tile) - len(dims)) + dims
    for k, t in enumerate(tile):
      dims[len(dims) - len(tile) + k] = -(-dims[len(dims) - len(tile) + k] // t) * t
    padded += math.prod(dims) * itemsize
  return unpadded, padded


def _check_compiled(job, result):
  assert result.fits and result.compiled is not None, result.error
  unpadded, padded = _shard_bytes_by_hand(job.args, result.compiled.input_formats)
  assert result.per_device_bytes["arguments_unpadded"] == unpadded
  assert result.per_device_bytes["arguments"] == padded
  assert result.per_device_bytes["total"] > 0


# ---------------------------------------------------------------------------------- names


def test_topology_names():
  cases = {
    "v4:8x8x8": ("v4:8x8x8", 512),
    "v4-1024": ("v4:8x8x8", 512),
    "v4-512": ("v4:4x8x8", 256),
    "v4-8": ("v4:2x2x1", 4),
    "v5litepod-256": ("v5e:16x16", 256),
    "v5litepod-8": ("v5e:2x4", 8),
    "v5e:16x16": ("v5e:16x16", 256),
    "v5p-128": ("v5p:4x4x4", 64),
    "v5p:4x4x8": ("v5p:4x4x8", 128),
    "v6e-64": ("v6e:8x8", 64),
    "v3-128": ("v3:8x8", 64),
    "v3-512": ("v3:16x16", 256),
    "v3:8x8": ("v3:8x8", 64),
  }
  for name, (jax_name, chips) in cases.items():
    t = aot.parse_topology(name)
    assert (t.name, math.prod(t.shape)) == (jax_name, chips), name
  for bad in ("v9:2x2", "v4:2x2", "v4-100", "tpu", "v5litepod-3"):
    with pytest.raises(ValueError, match="topology|slice|generation|torus"):
      aot.parse_topology(bad)


def test_meshes_on_tpu_slices():
  # The cases: jax.make_mesh raised NotImplementedError for these.
  v4_512 = aot.parse_topology("v4-512").devices()
  assert len(v4_512) == 256  # one device per chip ("megacore")
  assert dict(sharding.make_mesh(-1, 8, 2, v4_512).shape) == {"data": 16, "fsdp": 8, "tensor": 2}
  v4_1024 = aot.parse_topology("v4:8x8x8").devices()
  for shape in ((32, 16, 1), (-1, 8, 2), (1, 512, 1), (2, 64, 4)):
    mesh = sharding.make_mesh(*shape, v4_1024)
    assert mesh.devices.size == 512 and len({d.id for d in mesh.devices.flat}) == 512
  for name in ("v5e:16x16", "v3:8x8", "v6e:8x8", "v5p:4x4x8"):
    devices = aot.parse_topology(name).devices()
    for fsdp, tensor in ((1, 1), (8, 1), (8, 2), (16, 4)):
      assert sharding.make_mesh(-1, fsdp, tensor, devices).devices.size == len(devices)
  # v4 devices one per TensorCore (no megacore) are refused with the remedy named.
  from jax.experimental import topologies

  per_core = topologies.get_topology_desc("v4:2x2x1", "tpu").devices
  with pytest.raises(ValueError, match="megacore"):
    sharding.make_mesh(-1, 1, 1, per_core)
  with pytest.raises(ValueError, match="needs 32 devices"):
    sharding.make_mesh(2, 16, 1, aot.parse_topology("v5e:2x2").devices())


def test_two_slices_put_the_data_axis_across_slices():
  devices = aot.parse_topology("v5e:2x2", num_slices=2).devices()
  mesh = sharding.make_mesh(2, 4, 1, devices)
  slices = np.vectorize(lambda d: d.slice_index)(mesh.devices)
  assert (slices[0] == 0).all() and (slices[1] == 1).all()
  with pytest.raises(ValueError, match="multiple of the 2 slices"):
    sharding.make_mesh(1, 8, 1, devices)


def test_collectives_count_loop_iterations():
  hlo = """HloModule m

%body (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %ag = f32[16]{0} all-gather(f32[8]{0} %x), dimensions={0}
  %ar-start = f32[8]{0} all-reduce-start(f32[8]{0} %y), to_apply=%add
  %ar-done = f32[8]{0} all-reduce-done(f32[8]{0} %ar-start)
}

ENTRY %main (a: f32[8]) -> f32[8] {
  %w = (s32[], f32[8]) while((s32[], f32[8]) %t), condition=%cond, body=%body, TRIPS
  %rs = bf16[4]{0} reduce-scatter(bf16[8]{0} %z), dimensions={0}, to_apply=%add
}
"""
  hlo = hlo.replace("TRIPS", 'backend_config={"known_trip_count":{"n":"12"}}')
  assert aot.collectives_per_step(hlo) == {
    "all-gather": {"count": 12, "bytes": 12 * 64},
    "all-reduce": {"count": 12, "bytes": 12 * 32},
    "reduce-scatter": {"count": 1, "bytes": 8},
  }


# ------------------------------------------------------------------------- compiled steps


@pytest.mark.parametrize(
  "topology, num_slices, mesh",
  [
    ("v5e:2x2", 2, (-1, 1, 1)),  # data only, across 2 slices
    ("v4:2x2x1", 1, (1, 4, 1)),  # fsdp
    ("v3:2x2", 1, (2, 2, 2)),  # data x fsdp x tensor
  ],
)
def test_pretraining_steps_compile(topology, num_slices, mesh):
  slice_ = aot.parse_topology(topology, num_slices)
  program = pretrain_steps.compile_program(_pretrain_config(*mesh), slice_.devices())
  assert program.mesh.devices.size == (4 if topology == "v4:2x2x1" else 8)
  jobs = program.jobs if topology == "v3:2x2" else program.jobs[:1]  # eval once: time
  results = [aot.compile_job(job, slice_.chip.hbm_bytes) for job in jobs]
  for job, result in zip(jobs, results):
    _check_compiled(job, result)
  train = results[0]
  if mesh[1] > 1:  # parameters split over fsdp are gathered for the forward pass
    assert train.collectives["all-gather"]["count"] > 0
  assert "all-reduce" in train.collectives or "reduce-scatter" in train.collectives
  # The word-table gather under data x fsdp x tensor used to be replicated by XLA.
  assert not [w for w in train.warnings if "rematerialization" in w], train.warnings
  report = aot.build_report(slice_, program, results)
  assert report["mesh"] == dict(program.mesh.shape)
  assert report["num_devices"] == program.mesh.devices.size
  assert report["fits"] is True
  assert report["per_device_bytes"] == train.per_device_bytes
  assert set(report) >= {
    "topology",
    "device_kind",
    "num_devices",
    "mesh",
    "per_device_bytes",
    "hbm_bytes_per_device",
    "fits",
    "model_flops_per_step",
    "collectives",
    "warnings",
  }


def test_finetuning_steps_compile():
  c = glue.get_config()
  c.init_from, c.task = "tiny", "mnli"
  c.batch_size, c.eval_batch_size, c.max_seq_length = 8, 8, 32
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 2, 2
  slice_ = aot.parse_topology("v4:2x2x1")
  program = finetune_steps.compile_program(c, slice_.devices())
  assert [j.name for j in program.jobs] == ["train_step", "predict_step"]
  for job in program.jobs:
    _check_compiled(job, aot.compile_job(job, slice_.chip.hbm_bytes))


def test_base_steps_compile_under_fsdp_and_tensor():
  # The released size's shapes (hidden 768, 12 heads, vocabulary 30000: the word table split by
  # vocabulary over "tensor") at a short length: the pretraining and the fine-tuning train step.
  slice_ = aot.parse_topology("v4:2x2x1")
  c = base.get_config()
  c.batch_size, c.max_seq_length, c.max_predictions_per_seq = 16, 64, 8
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 2, 2
  program = pretrain_steps.compile_program(c, slice_.devices())
  shapes = {leaf.shape for leaf in jax.tree.leaves(program.jobs[0].args)}
  assert (30000, 128) in shapes and (768, 768) in shapes  # base's word table and attention
  train = aot.compile_job(program.jobs[0], slice_.chip.hbm_bytes)
  _check_compiled(program.jobs[0], train)
  assert train.collectives["all-gather"]["count"] > 0  # fsdp gathers the shared layer
  assert not [w for w in train.warnings if "rematerialization" in w], train.warnings
  f = glue.get_config()
  f.init_from, f.task = "base-v2", "mnli"  # shapes only: no weights are read
  f.batch_size, f.eval_batch_size, f.max_seq_length = 8, 8, 64
  f.mesh.data, f.mesh.fsdp, f.mesh.tensor = 1, 2, 2
  program = finetune_steps.compile_program(f, slice_.devices())
  _check_compiled(program.jobs[0], aot.compile_job(program.jobs[0], slice_.chip.hbm_bytes))


def test_analytic_flops_equal_the_benchmarks_formula():
  sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
  import common  # benchmarks/common.py

  c = _pretrain_config()
  program = pretrain_steps.compile_program(c, aot.parse_topology("v5e:2x2").devices())
  m = pretrain_steps.model_for_shapes(c).config
  expected = (
    c.batch_size
    * c.max_seq_length
    * common.model_flops_per_token(
      m.num_hidden_layers,
      m.hidden_size,
      m.intermediate_size,
      c.max_seq_length,
      m.embedding_size,
      m.vocab_size,
      c.max_predictions_per_seq,
    )
  )
  assert m.num_hidden_layers == 2 and program.model_flops_per_step == expected


def test_a_step_that_cannot_fit_fails_with_the_compilers_figures(tmp_path):
  report = tmp_path / "report.json"
  cmd = [
    sys.executable,
    "-m",
    "pretrain",
    "--config=pretrain/configs/tiny.py",
    "--config.batch_size=65536",
    "--config.max_seq_length=512",
    "--config.max_predictions_per_seq=20",
    "--compile_only",
    "--topology=v5litepod-4",
    f"--report={report}",
    f"--save_compiled={tmp_path / 'compiled'}",
  ]
  env = dict(os.environ, PYTHONPATH=ROOT, GLIBC_TUNABLES="")
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
  # Without a TPU chip libtpu's runtime is told not to look for TPU hosts: none of its errors.
  for noise in ("host bounds", "worker hostname", "INVALID_ARGUMENT", "libtpu_lockfile"):
    assert noise not in proc.stderr, proc.stderr[-3000:]
  assert "does not fit on v5e:2x2" in proc.stdout
  assert "exceeds available HBM" in proc.stdout  # the compiler's own figures
  assert "try remat 'full'" in proc.stdout and "grad_accum_steps 2" in proc.stdout
  assert "not saved" in proc.stdout and not (tmp_path / "compiled").exists()
  written = json.loads(report.read_text())
  assert written["fits"] is False and written["num_devices"] == 4
  assert written["per_device_bytes"]["temporaries"] > 16 * 2**30


# ------------------------------------------------------------------ saved compiled steps


def test_saved_tpu_steps_are_refused_for_another_config_or_slice(tmp_path):
  # A TPU executable cannot be loaded without a TPU (jax: "PjRtCompiler must be constructed
  # with a Client"): here the save and the checks made before loading; the CPU test below loads.
  slice_ = aot.parse_topology("v5e:2x2", num_slices=2)
  config = _pretrain_config(-1, 1, 1)
  program = pretrain_steps.compile_program(config, slice_.devices())
  eval_job = program.jobs[1]  # compiles faster than the train step; saved the same way
  result = aot.compile_job(eval_job, slice_.chip.hbm_bytes)
  record = compiled_steps.metadata(
    config, program.mesh, program.keys_not_in_steps, slice_.description
  )
  directory = str(tmp_path / "compiled")
  compiled_steps.save(directory, {"eval_step": result.compiled}, record)
  saved = compiled_steps.read_metadata(directory)
  assert saved["devices"] == {
    "platform": "tpu",
    "device_kind": program.mesh.devices.flat[0].device_kind,
    "num_devices": 8,
    "num_slices": 2,
    "torus": "2x2x1",
  }
  assert saved["versions"]["libtpu"] and saved["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
  assert saved["steps"] == ["eval_step"]

  def differences(config, devices):
    mesh = pretrain_steps.compile_program(config, devices).mesh
    running = compiled_steps.metadata(config, mesh, pretrain_steps.KEYS_NOT_IN_STEPS)
    return compiled_steps.differences(saved, running)

  assert differences(config, slice_.devices()) == []
  moved = _pretrain_config(-1, 1, 1)
  moved.data.train_files, moved.log_every_steps = "gs://elsewhere/*.txt", 7  # not in the step
  assert differences(moved, slice_.devices()) == []
  bigger = _pretrain_config(-1, 1, 1, batch_size=32)
  assert differences(bigger, slice_.devices()) == ["config: batch_size (16 -> 32)"]
  one_slice = differences(config, aot.parse_topology("v5e:2x4").devices())[0]
  assert "num_slices 2 -> 1" in one_slice and "torus '2x2x1' -> '2x4x1'" in one_slice
  v4 = differences(config, aot.parse_topology("v4:2x2x2").devices())[0]
  assert "device_kind" in v4 and "v5e:2x2 x 2 slices" in v4
  with pytest.raises(compiled_steps.CompiledMismatchError, match=r"batch_size \(16 -> 32\)"):
    compiled_steps.load(
      directory,
      compiled_steps.metadata(bigger, program.mesh, pretrain_steps.KEYS_NOT_IN_STEPS),
      {"eval_step": eval_job.args},
    )


def _write_corpus(path, docs=100):
  rs = np.random.RandomState(0)
  words = (
    "the a module function returns value list object class method string file data name type "
    "error default argument number path system time call set new first test line key item "
    "result can is are be when if this that of to in for with by on"
  ).split()
  with open(path, "w", encoding="utf-8") as f:
    for _ in range(docs):
      for _ in range(rs.randint(3, 8)):
        f.write(" ".join(rs.choice(words, size=rs.randint(4, 10))).capitalize() + ".\n")
      f.write("\n")
  return str(path)


def _small_cpu_config(corpus, **changes):
  c = _pretrain_config(-1, 1, 1, **changes)
  c.data.train_files, c.data.eval_fraction = corpus, 0.2
  c.tokenizer.vocab_size = 64  # what the corpus below fills
  for key, value in dict(
    hidden_size=32, embedding_size=16, num_attention_heads=2, intermediate_size=64
  ).items():
    c.model_overrides[key] = value
  c.num_train_steps, c.log_every_steps, c.eval_steps, c.progress_bar = 2, 1, 0, False
  c.remat, c.dtype = "none", "float32"  # the quickest to compile
  return c


def test_a_run_uses_saved_cpu_steps_and_refuses_mismatched_ones(tmp_path, caplog):
  from pretrain import train as pretrain_train

  corpus = _write_corpus(tmp_path / "corpus.txt")
  config = _small_cpu_config(corpus)
  program = pretrain_steps.compile_program(config, jax.devices())  # this CPU's 8 devices
  results = [aot.compile_job(job, 2**40) for job in program.jobs]
  directory = str(tmp_path / "compiled")
  compiled_steps.save(
    directory,
    {r.name: r.compiled for r in results},
    compiled_steps.metadata(config, program.mesh, program.keys_not_in_steps),
  )

  with caplog.at_level(logging.WARNING), jax.log_compiles(True):
    result = pretrain_train.train_and_evaluate(
      config, str(tmp_path / "run"), load_compiled=directory
    )
  assert result["step"] == 2 and np.isfinite(result["train"]["loss"])
  compiles = [r.getMessage()[:60] for r in caplog.records if "Compiling" in r.getMessage()]
  assert compiles, "jax.log_compiles logged nothing: the check below would prove nothing"
  # The steps are jitted functions named "step" (albert_flax.train.training): never compiled.
  assert not [m for m in compiles if m.startswith("Compiling jit(step) ")], compiles

  # The same model with another vocabulary (a tokenizer that came out smaller): same config,
  # so the metadata matches, but the word table's shape does not.
  other = pretrain_steps.model_for_shapes(_small_cpu_config(corpus, seed=0))
  other = type(other)(other.config.replace(vocab_size=100))
  steps = pretrain_steps.build_steps(config, other, program.mesh)
  with pytest.raises(compiled_steps.CompiledMismatchError, match="word_embeddings.*64.*100"):
    pretrain_steps.use_saved_steps(steps, config, program.mesh, directory)
  changed = _small_cpu_config(corpus, learning_rate=0.0123)
  steps = pretrain_steps.build_steps(changed, other, program.mesh)
  with pytest.raises(compiled_steps.CompiledMismatchError, match=r"learning_rate \(.* -> 0.0123"):
    pretrain_steps.use_saved_steps(steps, changed, program.mesh, directory)
