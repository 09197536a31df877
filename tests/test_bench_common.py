"""The benchmark helpers: FLOPs formula, synthetic batch, interleaved timing, paired ratios, and
the PyTorch LAMB that the PyTorch side of bench_vs_transformers uses (it must equal ours)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(
  0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
)

import common  # noqa: E402


def test_model_flops_per_token_base():
  # ALBERT-base, S=128, P=20: the formula term by term.
  L, H, I, S, E, V, P = 12, 768, 3072, 128, 128, 30000, 20
  expected = (
    6 * L * (4 * H * H + 2 * H * I) + 12 * L * S * H + 6 * E * H + 6 * (H * E + E * V) * P / S
  )
  got = common.model_flops_per_token(L, H, I, S, E, V, P)
  assert got == pytest.approx(expected)
  assert got == pytest.approx(5.2838e8, rel=1e-3)
  assert common.model_flops_per_token(L, H, I, S, E, V, P, training=False) == pytest.approx(got / 3)


def test_pretraining_batch_is_consistent():
  b = common.pretraining_batch(4, 32, vocab_size=100, num_predictions=5, seed=3)
  assert b["input_ids"].shape == (4, 32) and b["masked_lm_positions"].shape == (4, 5)
  valid = b["attention_mask"].sum(axis=1)
  assert (valid == 28).all()
  pos = b["masked_lm_positions"]
  assert (pos >= 1).all() and (pos < valid[:, None]).all()
  assert all(len(set(row)) == 5 for row in pos.tolist())  # distinct positions
  assert (np.take_along_axis(b["input_ids"], pos, axis=1) == 4).all()  # [MASK] in place
  assert ((b["masked_lm_ids"] >= 5) & (b["masked_lm_ids"] < 100)).all()
  assert set(np.unique(b["sentence_order_label"])) <= {0, 1}
  with pytest.raises(ValueError, match="num_predictions"):
    common.pretraining_batch(1, 4, 100, num_predictions=5)


def test_interleave_rotates_and_caps_slow_runners():
  calls = []
  runners = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
  t = common.interleave(runners, repeats=3, warmup=1, verbose=False, repeats_for={"c": 1})
  assert calls[:3] == ["a", "b", "c"]  # warm-up
  assert calls[3:] == ["a", "b", "c", "b", "a", "a", "b"]  # rotated; c only in repeat 1
  assert [len(t.wall[n]) for n in "abc"] == [3, 3, 1] and len(t.load) == 3
  with pytest.raises(ValueError):
    common.interleave(runners, repeats=0)


def test_paired_ratios_pairs_by_repeat():
  r = common.paired_ratios([1.0, 2.0, 4.0], [2.0, 2.0])  # theirs timed twice
  assert (r.median, r.low, r.high) == (1.5, 1.0, 2.0)
  assert common.Spread.of([3.0, 1.0, 2.0]).fmt(1) == "2.0 [1.0, 3.0]"


def test_torch_lamb_matches_albert_flax_lamb():
  torch = pytest.importorskip("torch")
  import impls
  import jax
  import optax

  from albert_flax.train import optim

  rng = np.random.default_rng(0)
  params = {
    "dense": {
      "kernel": rng.normal(size=(3, 4)).astype(np.float32),
      "bias": rng.normal(size=(4,)).astype(np.float32),
    },
    "LayerNorm": {"scale": rng.normal(size=(4,)).astype(np.float32)},
  }
  grads = [
    jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32) * 3, params)
    for _ in range(3)
  ]

  tx = optax.chain(
    optax.clip_by_global_norm(1.0), optim.lamb(impls.LEARNING_RATE, weight_decay=impls.WEIGHT_DECAY)
  )
  ours, state = params, tx.init(params)
  for g in grads:
    updates, state = tx.update(g, state, ours)
    ours = optax.apply_updates(ours, updates)

  named = {
    "dense.kernel": ("dense", "kernel"),
    "dense.bias": ("dense", "bias"),
    "LayerNorm.scale": ("LayerNorm", "scale"),
  }
  tensors = {n: torch.nn.Parameter(torch.tensor(params[a][b])) for n, (a, b) in named.items()}
  lamb = impls.TorchLamb(list(tensors.items()))
  for g in grads:
    for n, (a, b) in named.items():
      tensors[n].grad = torch.tensor(np.asarray(g[a][b]))
    lamb.step()
  for n, (a, b) in named.items():
    np.testing.assert_allclose(
      tensors[n].detach().numpy(), np.asarray(ours[a][b]), rtol=1e-5, atol=1e-6
    )
  assert not np.allclose(np.asarray(ours["dense"]["kernel"]), params["dense"]["kernel"])


def test_profile_step_attributes_kernels_to_parts_of_the_step():
  import profile_step

  hlo = "\n".join(
    [
      '  %ynn_fusion.3 = f32[1024,3072]{1,0} fusion(%a, %b), kind=kCustom, calls=%c, '
      'metadata={op_name="jit(step)/jvp(M)/albert/ffn/dot_general"}, '
      'backend_config={"fusion_config":{"kind":"__ynn_fusion"}}',
      '  %bitcast_dynamic-update-slice_fusion.7 = f32[12,8,128,768]{3,2,1,0} fusion(%x, %y), '
      'kind=kLoop, metadata={op_name="jit(step)/jvp(M)/encoder/while/body/dynamic_update_slice"}',
      '  ROOT %multiply_add_fusion.1 = f32[8,128,768]{2,1,0} fusion(%p), kind=kLoop, '
      'metadata={op_name="jit(step)/transpose(jvp(M))/albert/add_any"}',
      '  %wrapped_broadcast.12 = f32[12,8,128,3072]{3,2,1,0} fusion(%z), kind=kLoop',
    ]
  )
  table = profile_step.instruction_table(hlo)
  assert set(table) == {
    "ynn_fusion.3",
    "bitcast_dynamic-update-slice_fusion.7",
    "multiply_add_fusion.1",
    "wrapped_broadcast.12",
  }
  groups = {name: profile_step.category(name, *table[name]) for name in table}
  assert groups == {
    "ynn_fusion.3": "matmul fwd",
    "bitcast_dynamic-update-slice_fusion.7": "copy fwd",
    "multiply_add_fusion.1": "elementwise bwd",
    "wrapped_broadcast.12": "optimizer/other",
  }


def test_transformers_flax_venv_fallback(tmp_path, monkeypatch):
  """With transformers' Flax ALBERT usable the scripts run in place; without it they build a venv
  over this environment (transformers 4.x only) and exec themselves there, once."""
  import impls

  calls = []
  monkeypatch.setattr(impls.os, "execve", lambda *a: calls.append(("exec",) + a))
  monkeypatch.setattr(impls, "hf_flax_problem", lambda: None)
  impls.run_with_transformers_flax("bench.py", ["--x"], str(tmp_path / "venv"))
  assert calls == []  # usable here: nothing built, nothing re-run

  import subprocess

  ran = []
  monkeypatch.setattr(impls, "hf_flax_problem", lambda: "ImportError: no Flax models")
  monkeypatch.setattr(
    subprocess, "run", lambda cmd: ran.append(cmd) or subprocess.CompletedProcess(cmd, 0)
  )
  monkeypatch.delenv(impls.VENV_MARKER, raising=False)
  venv = str(tmp_path / "venv")
  impls.run_with_transformers_flax("bench.py", ["--x"], venv)
  assert ran == impls.venv_commands(venv, sys.executable)
  assert "--system-site-packages" in ran[0] and impls.TRANSFORMERS_WITH_FLAX in ran[1]
  ((_, exe, args, env),) = calls
  assert exe == os.path.join(venv, "bin", "python") and args == [exe, "bench.py", "--x"]
  assert env[impls.VENV_MARKER] == venv

  # Inside the venv and still unusable: a clear error instead of another exec.
  monkeypatch.setenv(impls.VENV_MARKER, venv)
  with pytest.raises(SystemExit, match="even in the venv"):
    impls.run_with_transformers_flax("bench.py", [], venv)


def test_bench_vs_transformers_times_several_remat_policies_in_one_loop():
  import bench_vs_transformers

  results = bench_vs_transformers.main(
    [
      "--size",
      "tiny",
      "--layers",
      "1",
      "--batch",
      "2",
      "--seq",
      "16",
      "--predictions",
      "2",
      "--sides",
      "ours",
      "--dtypes",
      "float32",
      "--modes",
      "train",
      "--repeats",
      "2",
      "--ours-remat",
      "dots,none",
    ]
  )
  rows = {row["side"]: row for row in results["rows"]}
  assert set(rows) == {"ours", "ours:none"}
  assert rows["ours"]["ours_config"]["remat"] == "dots"
  assert rows["ours:none"]["ours_config"]["remat"] == "none"
  assert rows["ours:none"]["ratio_ours_over"]["median"] > 0  # ours against the variant
  assert all(
    0 < row["ms"]["low"] <= row["ms"]["median"] <= row["ms"]["high"] for row in rows.values()
  )
