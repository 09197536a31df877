"""The implementations the benchmarks compare, behind one interface.

Each side holds an ALBERT pretraining model (MLM + SOP heads) with random weights, one synthetic
batch, and exposes

    forward()     one jitted/no-grad forward of the pretraining model, blocking;
    train_step()  one optimizer update on the batch (MLM on the P masked positions + SOP, LAMB
                  with global-norm clipping), blocking;
    lower_train_step()  (JAX sides) the jax.stages.Lowered step, for compile time and memory;
                  `abstract=True` builds a JAX side from shapes only, for this alone.

Sides:
  OursJax    albert_flax.AlbertForPreTraining and OUR step:
  `albert_flax.train.training.make_train_step`
             with `albert_flax.train.optim.create_optimizer("lamb", ...)` and
             `albert_flax.train.losses.pretraining_stats`; the MLM head runs on the gathered
             positions.
  HFFlax     transformers 4.x FlaxAlbertForPreTrainingModule under the SAME step machinery,
             optimizer and loss; as transformers computes it, its MLM head runs over all S
             positions and the loss then picks the P masked ones.
  HFTorch    transformers' PyTorch AlbertForPreTraining, the same loss, clipping and LAMB (a
             direct PyTorch transcription of albert_flax.train.optim.lamb, below); bf16 through
             torch.autocast (float32 parameters, bfloat16 matmuls), i.e. the same split as ours.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

# ALBERT's pretraining optimizer settings (the paper's recipe); only the cost of the update matters
# here, so the schedule's position is irrelevant.
LEARNING_RATE, TOTAL_STEPS, WARMUP_STEPS, WEIGHT_DECAY = 1.76e-3, 125_000, 3_125, 0.01


def hf_config_dict(cfg) -> dict[str, Any]:
  """transformers.AlbertConfig kwargs for our AlbertConfig (same architecture and dropouts)."""
  from albert_flax.config import TRANSFORMERS_FIELDS

  return {k: getattr(cfg, k) for k in TRANSFORMERS_FIELDS}


def hf_flax_problem() -> str | None:
  """None when transformers' Flax ALBERT builds and differentiates here, else what fails.

  transformers 4.57 (the last line with Flax models) is checked against the installed jax/flax
  with a two-layer model: forward, then a jitted gradient.
  """
  try:
    import jax
    import jax.numpy as jnp
    import transformers
    from transformers.models.albert.modeling_flax_albert import FlaxAlbertForPreTrainingModule

    cfg = transformers.AlbertConfig(
      vocab_size=50,
      embedding_size=8,
      hidden_size=16,
      num_hidden_layers=2,
      num_attention_heads=2,
      intermediate_size=32,
    )
    module = FlaxAlbertForPreTrainingModule(cfg)
    ids = jnp.ones((1, 4), jnp.int32)
    params = module.init(jax.random.key(0), ids, ids, ids * 0, ids * 0)["params"]
    loss = lambda p: module.apply({"params": p}, ids, ids, ids * 0, ids * 0).prediction_logits.sum()
    jax.block_until_ready(jax.jit(jax.grad(loss))(params))
  except Exception as e:  # any failure means the in-process comparison cannot run
    return f"{type(e).__name__}: {e}"
  return None


# transformers 4.x (the last line with Flax models) for a machine whose own transformers is v5+.
TRANSFORMERS_WITH_FLAX = "transformers>=4.46,<5"
VENV_MARKER = "ALBERT_FLAX_BENCH_VENV"  # set in the re-executed process: never recurse


def default_venv_dir() -> str:
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "albert-flax", "transformers4-venv")


def venv_commands(venv_dir: str, python: str) -> list[list[str]]:
  """The commands that make `venv_dir` a venv with transformers 4.x over this environment
  (without the `venv` step when it exists already).

  --system-site-packages: jax, flax, torch and albert_flax come from the running environment
  (the same versions as the other sides), and only transformers is replaced; a venv's own
  site-packages precede the system's on sys.path, so its transformers is the one imported.
  """
  venv_python = os.path.join(venv_dir, "bin", "python")
  create = (
    []
    if os.path.exists(venv_python)
    else [[python, "-m", "venv", "--system-site-packages", venv_dir]]
  )
  # pip runs every time: a no-op when the pin is met, an upgrade of an old cached venv if not.
  return create + [[venv_python, "-m", "pip", "install", "--quiet", TRANSFORMERS_WITH_FLAX]]


def run_with_transformers_flax(script: str, argv: list[str], venv_dir: str | None = None) -> None:
  """Return if transformers' Flax ALBERT runs here; else re-run the script inside a venv.

  On a machine with transformers v5 (no Flax models) the comparison still runs, as the issue
  asks: a venv holding transformers 4.x is built once (cached under ~/.cache/albert-flax) and
  the script is exec'ed again with its Python. Raises SystemExit when even that fails.
  """
  import subprocess
  import sys

  problem = hf_flax_problem()
  if problem is None:
    return
  if os.environ.get(VENV_MARKER):
    raise SystemExit(
      f"transformers' FlaxAlbertForPreTraining does not run, even in the venv "
      f"{os.environ[VENV_MARKER]}: {problem}"
    )
  venv_dir = venv_dir or default_venv_dir()
  venv_python = os.path.join(venv_dir, "bin", "python")
  print(
    f"# transformers' Flax ALBERT is not usable here ({problem}); running in {venv_dir} "
    f"with {TRANSFORMERS_WITH_FLAX}",
    flush=True,
  )
  for command in venv_commands(venv_dir, sys.executable):
    if subprocess.run(command).returncode:
      raise SystemExit(f"could not prepare the transformers 4.x venv: {' '.join(command)} failed")
  env = dict(os.environ, **{VENV_MARKER: venv_dir})
  os.execve(venv_python, [venv_python, script, *argv], env)


def _jax_batch(batch: Mapping[str, np.ndarray], mesh) -> dict[str, Any]:
  from albert_flax import sharding

  return sharding.global_batch(batch, mesh, next(iter(batch.values())).shape[0])


class _JaxSide:
  """Shared plumbing of the two JAX sides: our train-step machinery around a stats_fn."""

  name = "?"
  compiles = True  # the first forward / train_step call includes XLA compilation

  def _setup(
    self, init_params_fn, stats_fn, forward_fn, batch: Mapping[str, np.ndarray], abstract: bool
  ):
    import jax

    from albert_flax import sharding
    from albert_flax.train import losses, optim, training

    self.mesh = sharding.make_mesh(devices=jax.devices()[:1])
    self.optimizer, _ = optim.create_optimizer(
      "lamb", LEARNING_RATE, TOTAL_STEPS, WARMUP_STEPS, weight_decay=WEIGHT_DECAY
    )
    if abstract:
      # Shapes and shardings only: enough to lower and compile, nothing is initialized.
      shapes, shardings = training.abstract_train_state(
        init_params_fn, self.optimizer, self.mesh, jax.random.key(0)
      )
      self.state = training.abstract_with_shardings(shapes, shardings)
    else:
      self.state, shardings = training.init_train_state(
        init_params_fn, self.optimizer, self.mesh, jax.random.key(0)
      )
    self.batch = _jax_batch(batch, self.mesh)
    self._step = training.make_train_step(
      stats_fn, losses.pretraining_loss_weights, self.optimizer, shardings, self.mesh
    )
    self._forward = jax.jit(forward_fn)

  def forward(self):
    import jax

    return jax.block_until_ready(self._forward(self.state.params, self.batch))

  def train_step(self):
    import jax

    # The step donates the state: keep the new one (the forward reads its params too).
    self.state, metrics = self._step(self.state, self.batch)
    return jax.block_until_ready(metrics)

  def lower_train_step(self):
    return self._step.lower(self.state, self.batch)

  def lower_forward(self):
    return self._forward.lower(self.state.params, self.batch)


class OursJax(_JaxSide):
  """albert_flax.AlbertForPreTraining with albert_flax.train.training.make_train_step."""

  name = "ours"

  def __init__(self, cfg, batch: Mapping[str, np.ndarray], abstract: bool = False):
    import jax.numpy as jnp

    import albert_flax as af
    from albert_flax.train import losses

    model = af.AlbertForPreTraining(cfg)
    seq = batch["input_ids"].shape[1]
    self.model, self.config = model, cfg

    def init_params_fn(rng):
      return model.init(rng, jnp.zeros((1, seq), jnp.int32))["params"]

    stats_fn = losses.pretraining_stats_fn(model)

    def forward_fn(params, b):
      out = losses.apply_pretraining(model, params, b)
      return out.prediction_logits, out.sop_logits

    self._setup(init_params_fn, stats_fn, forward_fn, batch, abstract)


class HFFlax(_JaxSide):
  """transformers' FlaxAlbertForPreTrainingModule (4.x) under our step machinery."""

  name = "hf_flax"

  def __init__(self, cfg, batch: Mapping[str, np.ndarray], abstract: bool = False):
    import jax.numpy as jnp
    import transformers
    from transformers.models.albert.modeling_flax_albert import FlaxAlbertForPreTrainingModule

    from albert_flax.train import losses

    hf_cfg = transformers.AlbertConfig(**hf_config_dict(cfg))
    # `dtype` is transformers' computation dtype; its parameters stay float32, as ours.
    module = FlaxAlbertForPreTrainingModule(hf_cfg, dtype=jnp.dtype(cfg.dtype))
    batch_size, seq = batch["input_ids"].shape
    positions = jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), (batch_size, seq))
    self.module, self.config = module, cfg

    def init_params_fn(rng):
      ones = jnp.ones((1, seq), jnp.int32)
      return module.init(rng, ones, ones, ones * 0, positions[:1])["params"]

    def apply(params, b, train, rng=None):
      return module.apply(
        {"params": params},
        b["input_ids"],
        b["attention_mask"],
        b["token_type_ids"],
        positions,
        deterministic=not train,
        rngs={"dropout": rng} if train else None,
      )

    def stats_fn(params, b, rng, train):
      out = apply(params, b, train, rng)
      # [B, S, V] -> [B, P, V]: the loss only reads the masked positions.
      picked = jnp.take_along_axis(
        out.prediction_logits, b["masked_lm_positions"][..., None], axis=1
      )
      return losses.pretraining_stats(picked, out.sop_logits, b)

    def forward_fn(params, b):
      out = apply(params, b, False)
      return out.prediction_logits, out.sop_logits

    self._setup(init_params_fn, stats_fn, forward_fn, batch, abstract)


# ------------------------------------------------------------------------------- PyTorch


class TorchLamb:
  """albert_flax.train.optim's LAMB (no bias correction, decay and trust ratio masked by name) after
  global-norm clipping to 1.0, in PyTorch."""

  def __init__(
    self,
    named_params,
    lr: float = LEARNING_RATE,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = WEIGHT_DECAY,
    exclude=("LayerNorm", "layer_norm", "bias"),
  ):
    import torch

    self.params = [(n, p) for n, p in named_params if p.requires_grad]
    self.decayed = [not any(w in n for w in exclude) for n, _ in self.params]
    self.m = [torch.zeros_like(p) for _, p in self.params]
    self.v = [torch.zeros_like(p) for _, p in self.params]
    self.lr, self.b1, self.b2, self.eps, self.wd = lr, b1, b2, eps, weight_decay

  def step(self) -> None:
    import torch

    grads = [p.grad for _, p in self.params]
    torch.nn.utils.clip_grad_norm_([p for _, p in self.params], 1.0)
    with torch.no_grad():
      for (_, p), g, m, v, decayed in zip(self.params, grads, self.m, self.v, self.decayed):
        m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        u = m / (v.sqrt() + self.eps)
        ratio = 1.0
        if decayed:
          u.add_(p, alpha=self.wd)
          w_norm, u_norm = p.norm(), u.norm()
          ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
        p.sub_(self.lr * ratio * u)
        p.grad = None


class HFTorch:
  """transformers' PyTorch AlbertForPreTraining on CPU with torch's threads = the core count."""

  name = "hf_torch"
  compiles = False

  def __init__(self, cfg, batch: Mapping[str, np.ndarray], threads: int | None = None):
    import torch
    import transformers

    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    self.torch = torch
    self.model = transformers.AlbertForPreTraining(transformers.AlbertConfig(**hf_config_dict(cfg)))
    self.attn_implementation = getattr(self.model.config, "_attn_implementation", "eager")
    self.bf16 = cfg.dtype == "bfloat16"
    if cfg.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"HFTorch supports float32 and bfloat16, not {cfg.dtype}")
    self.batch = {
      k: torch.from_numpy(np.asarray(v)).long()
      if v.dtype.kind in "iu"
      else torch.from_numpy(np.asarray(v))
      for k, v in batch.items()
    }
    self.optimizer = TorchLamb(self.model.named_parameters())

  def _autocast(self):
    return self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.bf16)

  def _run(self):
    b = self.batch
    return self.model(
      input_ids=b["input_ids"],
      attention_mask=b["attention_mask"],
      token_type_ids=b["token_type_ids"],
    )

  def forward(self):
    self.model.eval()
    with self.torch.inference_mode(), self._autocast():
      out = self._run()
    return out.prediction_logits, out.sop_logits

  def train_step(self):
    torch = self.torch
    b = self.batch
    self.model.train()
    with self._autocast():
      out = self._run()
      picked = torch.gather(
        out.prediction_logits,
        1,
        b["masked_lm_positions"][..., None].expand(-1, -1, out.prediction_logits.shape[-1]),
      )
    w = b["masked_lm_weights"]
    mlm = torch.nn.functional.cross_entropy(
      picked.float().flatten(0, 1), b["masked_lm_ids"].flatten(), reduction="none"
    )
    mlm = (mlm * w.flatten()).sum() / w.sum()
    sop = torch.nn.functional.cross_entropy(out.sop_logits.float(), b["sentence_order_label"])
    loss = mlm + sop
    loss.backward()
    self.optimizer.step()
    value = loss.item()  # also waits for the step, as the JAX sides block
    if not math.isfinite(value):
      raise FloatingPointError("PyTorch ALBERT produced a non-finite loss")
    return value


SIDES = {"ours": OursJax, "hf_flax": HFFlax, "hf_torch": HFTorch}
