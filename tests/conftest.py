"""Shared test helpers: a tiny ALBERT, transformers reference models, one jitted forward per model.

Sizes are tiny (V=99, E=16, H=32, 4 heads, I=37, batch 3, seq 9) and each (model, config) is
compiled once per session (`forward`), so parity tests cost little compilation.
"""

from __future__ import annotations

import os

from multiprocess_launch import FAST_COMPILE_XLA_FLAGS  # imports no jax

# Before jax: 8 CPU devices for the sharding tests, and compiles at a fraction of their cost.
os.environ.setdefault(
  "XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE_XLA_FLAGS}"
)
# The test extras install libtpu (for the TPU compiler's compile-only tests, which build their
# devices from a topology and need no TPU backend). Without this every jax process, and every
# process of a multi-process test, would first try to open a TPU and contend for libtpu's lock.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import functools
import shutil
import tempfile

import jax
import numpy as np
import pytest
from gcs_server import gcs_path, gcs_server  # noqa: F401  (fixtures: a local Cloud Storage server)

# L=4 steps over G=2 groups of 2 distinct layers, E != H. (transformers' AlbertLayerGroup slices
# its head mask by L // G layers, so it needs L // G >= inner_group_num.) initializer_range 0.2
# makes attention far from uniform, so a wrong mask or head split shows in the outputs.
TINY = dict(
  vocab_size=99,
  embedding_size=16,
  hidden_size=32,
  num_hidden_layers=4,
  num_hidden_groups=2,
  inner_group_num=2,
  num_attention_heads=4,
  intermediate_size=37,
  hidden_act="gelu_new",
  max_position_embeddings=24,
  initializer_range=0.2,
)
BATCH, SEQ = 3, 9


def pytest_configure(config):
  """One persistent XLA compilation cache for the whole test session, in a temp dir.

  Many tests compile the same small programs again: a new `jax.jit` of the same function in
  another test, every `python -m pretrain|finetune` subprocess and notebook kernel of the same
  tiny config. The cache serves this process, its pytest-xdist workers (started after this runs,
  they inherit the environment) and every subprocess; every compilation is kept (minimum compile
  time 0). Entries are keyed by the HLO, the compile options, the devices and jax's version, so a
  hit is the executable a compile would give. Only process 0 of a multi-process (jax.distributed)
  run writes entries; an entry read while another process writes it fails to decompress, and jax
  then warns and compiles. The process that made the directory removes it at the end;
  JAX_COMPILATION_CACHE_DIR set beforehand is used as it is.
  """
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    directory = tempfile.mkdtemp(prefix="albert-flax-tests-xla-cache-")
    config.add_cleanup(functools.partial(shutil.rmtree, directory, ignore_errors=True))
    os.environ.update(
      JAX_COMPILATION_CACHE_DIR=directory,
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
  # jax read its flags from the environment when conftest imported it: set them here too.
  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" in os.environ:
    seconds = float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
  if "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES" in os.environ:
    size = int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"])
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", size)


# The test modules that take longest, longest first (seconds of a 2-core run, setup included,
# from `pytest --durations=0`). The two xdist workers take whole modules (--dist loadscope) in
# collection order (--no-loadscope-reorder: xdist would otherwise put the modules with the most
# tests first, and a long one-test module such as test_chaos.py last, on one worker, while the
# other sits idle); the longest first, the short ones fill in at the end, so both workers finish
# together. Modules not listed keep their order, after these; the list only changes the order.
# The figures: one run on a loaded machine (load average ~5, another job busy on one core), with
# the compile-fast XLA flags; only their order matters.
SLOWEST_MODULES = (
  "test_tpu_compile.py",  # 246 s (the TPU compiler: the fast-compile flags do not apply)
  "test_pretrain_train.py",  # 174 s; the default command's learning run, fully optimized
  "test_chaos.py",  # 164 s; first of the 48-step runs: compiles their train step
  "test_gcs_programs.py",  # 140 s
  "test_modeling.py",  # 128 s
  "test_notebooks.py",  # 125 s
  "test_finetune_train.py",  # 120 s
  "test_reliability.py",  # 98 s
  "test_multiprocess.py",  # 77 s
  "test_finetune_buckets.py",  # 75 s
  "test_checkpoints.py",  # 74 s
  "test_pipelines.py",  # 57 s
  "test_nnx.py",  # 56 s
  "test_sharding.py",  # 56 s
  "test_bench_common.py",  # 47 s
  "test_pretrain_zh.py",  # 45 s
  "test_attentions.py",  # 40 s
  "test_finetune_multiprocess.py",  # 37 s
  "test_pretrain_data.py",  # 34 s
  "test_bf16_hlo.py",  # 32 s
  "test_finetune_losses.py",  # 28 s
  "test_gcs_library.py",  # 23 s
  "test_checkpoints_zh.py",  # 15 s
  "test_wordpiece.py",  # 13 s
  "test_pretrain_grain.py",  # 12 s
  "test_model_card.py",  # 10 s
  "test_checkpoint_multiprocess.py",  # 10 s
)


def pytest_collection_modifyitems(config, items):
  rank = {name: i for i, name in enumerate(SLOWEST_MODULES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: modules stay whole


def make_inputs(choices: int | None = None, seed: int = 0):
  """input_ids, attention_mask (rows padded on the right), token_type_ids.

  Each [BATCH, SEQ], or [BATCH, choices, SEQ] when `choices` is given."""
  rng = np.random.default_rng(seed)
  shape = (BATCH, SEQ) if choices is None else (BATCH, choices, SEQ)
  ids = rng.integers(5, TINY["vocab_size"], shape)
  mask = np.ones(shape, np.int64)
  mask[1, ..., 6:] = 0
  mask[2, ..., 4:] = 0
  ids[mask == 0] = 0
  types = np.zeros(shape, np.int64)
  types[..., 3:] = 1
  types[mask == 0] = 0
  return ids, mask, types


def dropout_loss(model, params, weights, seed: int = 2):
  """(loss, outputs) of an AlbertForPreTraining on `make_inputs()` with dropout on (key `seed`):
  sum(prediction_logits * weights) + sum(sop_logits ** 2), whose gradient reaches every
  parameter. weights: [BATCH, SEQ, vocab_size]."""
  import jax.numpy as jnp

  ids, mask, types = make_inputs()
  out = model.apply(
    {"params": params},
    ids,
    attention_mask=mask,
    token_type_ids=types,
    deterministic=False,
    rngs={"dropout": jax.random.key(seed)},
  )
  return jnp.sum(out.prediction_logits * weights) + jnp.sum(out.sop_logits**2), out


def torch_reference(class_name: str, seed: int = 0, **overrides):
  """transformers' AlbertFor* (eager attention, eval mode) with every bias and LayerNorm
  parameter perturbed, so no zero bias or unit scale can hide a mix-up."""
  import torch
  import transformers

  config = transformers.AlbertConfig(**{**TINY, **overrides}, attn_implementation="eager")
  torch.manual_seed(seed)
  model = getattr(transformers, class_name)(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
        p.add_(0.2 * torch.randn_like(p))
  return model


def torch_outputs(model, ids, mask, types) -> dict[str, np.ndarray | tuple]:
  import torch

  with torch.no_grad():
    out = model(
      torch.tensor(ids),
      attention_mask=torch.tensor(mask),
      token_type_ids=torch.tensor(types),
      output_hidden_states=True,
    )
  return {
    k: (tuple(h.numpy() for h in v) if isinstance(v, tuple) else v.numpy())
    for k, v in out.items()
    if v is not None
  }


@functools.cache
def _jitted(model, output_hidden_states: bool):
  def run(params, ids, mask, types, masked_positions):
    extra = {} if masked_positions is None else {"masked_positions": masked_positions}
    return model.apply(
      {"params": params},
      ids,
      attention_mask=mask,
      token_type_ids=types,
      output_hidden_states=output_hidden_states,
      **extra,
    )

  return jax.jit(run)


def forward(
  model, params, ids, mask=None, types=None, *, output_hidden_states=True, masked_positions=None
):
  """model.apply, jitted once per (model, config, flag) for the whole session."""
  return _jitted(model, output_hidden_states)(params, ids, mask, types, masked_positions)


def assert_outputs_match(ours, theirs: dict, rtol=1e-5, atol=1e-5) -> int:
  """Compare every output transformers returned (a dict) with ours (an output dataclass, or a
  dict); same field names. Returns how many fields were compared."""
  checked = 0
  for name, expected in theirs.items():
    if name == "loss":
      continue
    got = ours[name] if isinstance(ours, dict) else getattr(ours, name)
    if name == "hidden_states":
      assert len(got) == len(expected), (len(got), len(expected))
      for i, (g, e) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(
          np.asarray(g), e, rtol=rtol, atol=atol, err_msg=f"hidden_states[{i}]"
        )
    else:
      np.testing.assert_allclose(np.asarray(got), expected, rtol=rtol, atol=atol, err_msg=name)
    checked += 1
  return checked


@pytest.fixture(scope="session")
def pretraining_checkpoint(tmp_path_factory):
  """(directory saved by transformers, torch AlbertForPreTraining, inputs, torch outputs)."""
  model = torch_reference("AlbertForPreTraining")
  directory = tmp_path_factory.mktemp("hf_pretraining")
  model.save_pretrained(directory)
  inputs = make_inputs()
  return directory, model, inputs, torch_outputs(model, *inputs)
