"""The NNX models (`af.nnx`, linen through flax.nnx.bridge) against the linen model: one
classification training step (forward, backward, AdamW) timed in turns.

    python benchmarks/bench_nnx.py --preset=base-v2 --batch=8 --seq=128 --repeats=5

Three sides, same config, same data, same optimizer:
  linen        jax.jit(step)(params, opt_state, batch): the plain functional step.
  nnx.jit      @nnx.jit step(model, optimizer, batch): NNX's transform, which walks the module
               graph in Python on every call.
  nnx split    jax.jit over nnx.split / nnx.merge state (NNX's documented fast path): the
               traced program and the per-call work are those of the linen step.
Prints seconds per step and speed ratios linen / side (1.00 = as fast as linen).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="base-v2")
  parser.add_argument("--layers", type=int, default=0, help="override num_hidden_layers")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--calls", type=int, default=3)
  parser.add_argument("--json", default=None)
  args = parser.parse_args()

  import jax
  import numpy as np
  import optax

  import albert_flax as af
  from albert_flax import sharding

  info = common.machine_info()
  common.print_machine(info)
  overrides = {"num_hidden_layers": args.layers} if args.layers else {}
  config = af.AlbertConfig.preset(args.preset, num_labels=2, **overrides)
  rng = np.random.default_rng(0)
  ids = rng.integers(5, config.vocab_size, (args.batch, args.seq)).astype(np.int32)
  labels = rng.integers(0, 2, (args.batch,)).astype(np.int32)
  tx = optax.adamw(1e-4)

  def loss_of(logits):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  linen = af.AlbertForSequenceClassification(config)
  params = sharding.unbox(jax.jit(linen.init)(jax.random.key(0), ids[:1])["params"])
  runners = {
    "linen": _linen_runner(linen, params, tx, loss_of, ids),
    "nnx.jit": _nnx_runner(af.nnx.from_linen(linen, params), tx, loss_of, ids),
    "nnx split": _split_runner(af.nnx.from_linen(linen, params), tx, loss_of, ids),
  }
  timings = common.interleave(runners, args.repeats, args.calls)
  print(f"\n{args.preset} L={config.num_hidden_layers} batch {args.batch} x {args.seq}:")
  result = {}
  for name in runners:
    wall = common.Spread.of(timings.wall[name])
    ratio = common.paired_ratios(timings.wall[name], timings.wall["linen"])
    print(f"  {name:10s} {wall.median * 1e3:8.1f} ms/step   speed vs linen {ratio.fmt()}")
    result[name] = {"wall_s": timings.wall[name], "speed_vs_linen": ratio.median}
  common.write_json(args.json, {"machine": info, "args": vars(args), "results": result})


def _linen_runner(linen, params, tx, loss_of, ids):
  """One AdamW step of the linen model under jax.jit, as a call that blocks on its loss."""
  import jax
  import optax

  @jax.jit
  def linen_step(params, opt_state, ids):
    loss, grads = jax.value_and_grad(lambda p: loss_of(linen.apply({"params": p}, ids).logits))(
      params
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  state = {"linen": (params, tx.init(params))}

  def run_linen():
    p, o, loss = linen_step(*state["linen"], ids)
    state["linen"] = (p, o)
    return common.block(loss)

  return run_linen


def _nnx_runner(model, tx, loss_of, ids):
  """The same step of the nnx model under nnx.jit."""
  from flax import nnx

  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def nnx_step(model, optimizer, ids):
    loss, grads = nnx.value_and_grad(lambda m: loss_of(m(ids).logits))(model)
    optimizer.update(model, grads)
    return loss

  def run_nnx():
    return common.block(nnx_step(model, optimizer, ids))

  return run_nnx


def _split_runner(model, tx, loss_of, ids):
  """The same step under jax.jit over the nnx model's split state."""
  import jax
  from flax import nnx

  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, split_state = nnx.split((model, optimizer))

  @jax.jit
  def split_step(split_state, ids):
    model, optimizer = nnx.merge(graphdef, split_state)
    loss, grads = nnx.value_and_grad(lambda m: loss_of(m(ids).logits))(model)
    optimizer.update(model, grads)
    return nnx.state((model, optimizer)), loss

  holder = {"state": split_state}

  def run_split():
    holder["state"], loss = split_step(holder["state"], ids)
    return common.block(loss)

  return run_split


if __name__ == "__main__":
  main()
