"""The pretraining input as grain datasets: iterator state through orbax, mp_prefetch workers, the
global shuffle of static shards, the source's own grain state, states of the pre-grain pipeline.

The statistics, determinism, resume and share tests of the examples are in test_pretrain_data.py.
"""

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_pretrain_data import _write_corpus

from albert_flax.tokenization import AlbertTokenizer, train_tokenizer
from pretrain import create_data, data, pipeline

S, P = 64, 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  d = tmp_path_factory.mktemp("pretrain_grain")
  paths, _ = _write_corpus(str(d), num_docs=120)
  model = train_tokenizer(paths, 300, str(d / "spm"), seed=0, hard_vocab_limit=False, num_threads=2)
  shards = str(d / "shards")
  info = create_data.main(
    [
      f"--input={d / 'part-*.txt'}",
      f"--spm_model={model}",
      f"--output_dir={shards}",
      f"--max_seq_length={S}",
      f"--max_predictions_per_seq={P}",
      "--dupe_factor=1",
      "--num_shards=2",
    ]
  )
  return {
    "glob": str(d / "part-*.txt"),
    "tok": AlbertTokenizer(model),
    "shards": shards + "/*.array_record",
    "num_records": info["num_examples"],
  }


def _make(setup, static=False, **kw):
  kw = {"process_index": 0, "process_count": 1, "shuffle_buffer": 16, **kw}
  if static:
    return data.make_pretraining_batches(
      None, None, 16, S, P, 0, static_shards=setup["shards"], **kw
    )
  return data.make_pretraining_batches(setup["glob"], setup["tok"], 16, S, P, 0, **kw)


def _take(it, n):
  with it:
    return [next(it) for _ in range(n)]


def _assert_same(xs, ys):
  assert len(xs) == len(ys)
  for x, y in zip(xs, ys):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def test_state_round_trips_through_orbax(setup, tmp_path):
  import orbax.checkpoint as ocp

  from albert_flax.train.checkpoints import TrainCheckpointManager

  full = _take(_make(setup), 8)
  it = _make(setup)
  assert isinstance(it, grain.DatasetIterator)
  for _ in range(5):
    next(it)
  # grain's own orbax handler (one JSON file per process) ...
  checkpointer = ocp.Checkpointer(grain.checkpoint.CheckpointHandler())
  checkpointer.save(tmp_path / "grain", args=grain.checkpoint.CheckpointSave(it))
  restored = _make(setup)
  checkpointer.restore(tmp_path / "grain", args=grain.checkpoint.CheckpointRestore(restored))
  _assert_same(_take(restored, 3), full[5:])
  # ... and the training checkpoints: the position saved with the train state.
  with TrainCheckpointManager(str(tmp_path / "train"), async_save=False) as manager:
    manager.save(5, {"w": jnp.arange(3.0)}, it.get_state())
  it.close()
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = {"w": jax.ShapeDtypeStruct((3,), jnp.float32, sharding=sharding)}
  with TrainCheckpointManager(str(tmp_path / "train")) as manager:
    state, data_state, step = manager.restore(abstract)
  assert step == 5 and np.array_equal(state["w"], np.arange(3.0))
  _assert_same(_take(_make(setup, state=data_state), 3), full[5:])


def test_mp_prefetch_workers_equal_in_process_and_states_move_between_worker_counts(setup):
  # Static shards: chunks made by 2 grain workers, state taken there, resumed in-process.
  in_process = _take(_make(setup, static=True), 6)
  it = _make(setup, static=True, num_workers=2)
  with it:
    by_workers = [next(it) for _ in range(3)]
    state = it.get_state()
  _assert_same(by_workers, in_process[:3])
  _assert_same(_take(_make(setup, static=True, state=state), 3), in_process[3:])
  # Text: a state taken in-process, resumed by 2 workers (over several windows of 4 documents).
  full = _take(_make(setup, shuffle_buffer=4), 10)
  it = _make(setup, shuffle_buffer=4)
  for _ in range(4):
    next(it)
  state = it.get_state()
  it.close()
  _assert_same(_take(_make(setup, shuffle_buffer=4, num_workers=2, state=state), 6), full[4:])


def _keys(batches):
  """One bytes key per example: its input_ids and masked positions."""
  out = []
  for b in batches:
    rows = np.concatenate([b["input_ids"], b["masked_lm_positions"]], 1).astype(np.int32)
    out += [bytes(r) for r in rows]
  return out


def test_static_shards_are_shuffled_globally(setup):
  n = setup["num_records"]
  per = [
    _keys(list(_make(setup, static=True, num_epochs=2, drop_remainder=False, process_index=p,
                     process_count=2)))
    for p in range(2)
  ]  # fmt: skip
  # Equal shares (the two-epoch stream cut to an even length), disjoint within an epoch: process
  # p reads positions p, p + 2, ... of each epoch's permutation of all records.
  assert len(per[0]) == len(per[1]) == n
  epoch0 = [per[p][: (n - p + 1) // 2] for p in range(2)]
  assert sorted(epoch0[0] + epoch0[1]) == sorted(set(epoch0[0] + epoch0[1]))
  assert len(set(epoch0[0] + epoch0[1])) == n
  # A new permutation every epoch: a process's share changes (fixed shares would not).
  epoch1 = set(per[0][len(epoch0[0]) :])
  assert 0.3 < len(set(epoch0[0]) & epoch1) / len(epoch1) < 0.7


def test_windows_are_a_grain_dataset_with_its_own_state(setup):
  stream = data.TextStream(
    data.make_source(setup["glob"])[0],
    setup["tok"],
    data.ExampleConfig(S, P),
    window_docs=8,
    seed=0,
    process_index=0,
    process_count=1,
  )
  ds = stream.dataset(pipeline.Start())
  assert isinstance(ds, grain.IterDataset)
  it = iter(stream.windows())
  for _ in range(3):
    next(it)
  state = it.get_state()
  assert state.keys() == {"epoch", "window", "position"} and state["window"] == 3
  window = next(it)
  again = iter(stream.windows())
  again.set_state(state)
  assert next(again)["documents"] == window["documents"]
  # Pairing leaves masks to MaskTokens; masking changes only the masked positions.
  paired = pipeline.MakePairs(setup["tok"], stream.config).map(dict(window))
  ids = paired["examples"]["input_ids"].copy()
  masked = pipeline.MaskTokens(setup["tok"], stream.config).map(paired)["examples"]
  rows, slots = np.nonzero(masked["masked_lm_weights"])
  positions = masked["masked_lm_positions"][rows, slots]
  assert (masked["masked_lm_ids"][rows, slots] == ids[rows, positions]).all()
  is_masked = np.zeros(ids.shape, bool)
  is_masked[rows, positions] = True
  assert (masked["input_ids"][~is_masked] == ids[~is_masked]).all()
  assert (masked["input_ids"][is_masked] != ids[is_masked]).mean() > 0.8
