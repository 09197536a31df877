"""One process of a multi-process CPU run of the training machinery (used by test_multiprocess.py).

    python tests/multiprocess_helper.py --num_processes=2 --process_id=0 --port=PORT \
        --local_devices=4 --out=DIR

Builds the ("data", "fsdp", "tensor") = (2, 2, 2)-or-smaller mesh over all devices of all
processes, initializes a small ALBERT train state sharded over it, feeds this process's rows of
fixed global batches for three steps, saves a checkpoint (with a per-process data state of a
different length on each process), restores it, checks the restored state is identical, and takes
one more step. Process 0 writes DIR/result.json with the metrics of every step.
"""

import argparse
import json
import os

import multiprocess_launch  # tests/ is this script's directory, so on sys.path


def main() -> None:
  parser = argparse.ArgumentParser()
  multiprocess_launch.add_process_flags(parser)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  multiprocess_launch.init_process(args)

  import jax
  import jax.numpy as jnp
  import numpy as np

  import albert_flax as af
  from albert_flax import sharding
  from albert_flax.train import losses, optim, training
  from albert_flax.train.checkpoints import TrainCheckpointManager

  config = af.AlbertConfig(
    vocab_size=99,
    embedding_size=16,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=32,
    classifier_dropout_prob=0.0,
  )
  batch_size, seq, pred = 16, 16, 4
  model = af.AlbertForPreTraining(config)
  total = jax.device_count()
  mesh = sharding.make_mesh(-1, 2 if total >= 4 else 1, 2 if total >= 2 else 1)

  def init_params(rng):
    return model.init(
      rng, jnp.zeros((1, seq), jnp.int32), masked_positions=jnp.zeros((1, pred), jnp.int32)
    )["params"]

  def stats_fn(p, batch, rng, train):
    out = model.apply(
      {"params": p},
      batch["input_ids"],
      batch["attention_mask"],
      batch["token_type_ids"],
      masked_positions=batch["masked_lm_positions"],
      deterministic=not train,
      rngs={"dropout": rng},
    )
    return losses.pretraining_stats(out.prediction_logits, out.sop_logits, batch)

  tx, schedule = optim.create_optimizer("lamb", 0.01, 10, 1)
  state, shardings = training.init_train_state(init_params, tx, mesh, jax.random.key(0))
  step_fn = training.make_train_step(
    stats_fn, losses.pretraining_loss_weights, tx, shardings, mesh, learning_rate_fn=schedule
  )

  rs = np.random.RandomState(0)
  index, count = sharding.process_batch_share(mesh, batch_size)
  rows = slice(index * batch_size // count, (index + 1) * batch_size // count)

  def batch(i):
    del i
    full = dict(
      input_ids=rs.randint(5, 99, size=(batch_size, seq)).astype(np.int32),
      attention_mask=(np.arange(seq)[None] < rs.randint(8, seq + 1, size=(batch_size, 1))).astype(
        np.int32
      ),
      token_type_ids=(np.arange(seq)[None] >= 6).repeat(batch_size, 0).astype(np.int32),
      masked_lm_positions=rs.randint(0, 8, size=(batch_size, pred)).astype(np.int32),
      masked_lm_ids=rs.randint(5, 99, size=(batch_size, pred)).astype(np.int32),
      masked_lm_weights=(rs.rand(batch_size, pred) > 0.25).astype(np.float32),
      sentence_order_label=rs.randint(0, 2, size=(batch_size,)).astype(np.int32),
    )
    return sharding.global_batch({k: v[rows] for k, v in full.items()}, mesh, batch_size)

  history = []
  for i in range(3):
    state, metrics = step_fn(state, batch(i))
    history.append({k: float(v) for k, v in jax.device_get(metrics).items()})

  # Checkpoint round trip across processes, with a data state of a different size on each.
  data_state = {"process": jax.process_index(), "padding": "x" * (7 * jax.process_index() + 1)}
  manager = TrainCheckpointManager(os.path.join(args.out, "checkpoints"), max_to_keep=2)
  manager.save(3, state, data_state)
  manager.wait_until_finished()
  abstract = training.abstract_with_shardings(
    *training.abstract_train_state(init_params, tx, mesh, jax.random.key(0))
  )
  restored, restored_data, restored_step = manager.restore(abstract)
  manager.close()
  assert restored_step == 3, restored_step
  assert restored_data == data_state, (restored_data, data_state)
  for saved, back in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    assert back.sharding == saved.sharding, (back.sharding, saved.sharding)
    for a, b in zip(saved.addressable_shards, back.addressable_shards):
      np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
  state, metrics = step_fn(restored, batch(3))
  history.append({k: float(v) for k, v in jax.device_get(metrics).items()})

  if jax.process_index() == 0:
    with open(os.path.join(args.out, "result.json"), "w") as f:
      json.dump(
        {
          "history": history,
          "mesh": dict(mesh.shape),
          "share_count": count,
          "process_count": jax.process_count(),
        },
        f,
      )


if __name__ == "__main__":
  main()
