"""int8 against float32 on a model fine-tuned here: dev accuracy, parameter bytes, CPU latency.

Builds a small task and a starting checkpoint on this machine (no downloads): a SentencePiece
model trained on the task's own words, a `tiny` ALBERT (random backbone), and an SST-2-format
sentiment set whose label is the majority of three cue words ("great" / "awful") among filler,
so the model has to count rather than spot one word. Fine-tunes with the fine-tuning program
(`python -m finetune --config=finetune/configs/glue.py --config.task=sst2`), then scores the dev
set with the fine-tuned float32 model and with `af.quantize` of it (weight-only int8, and int8
weights + dynamic int8 activations).

    python benchmarks/int8_finetuned.py                 # ~5 min on 2 cores
    python benchmarks/int8_finetuned.py --train-steps 300 --workdir /tmp/int8run
    python benchmarks/int8_finetuned.py --finetuned RUN --data DIR   # score a fine-tuning
        # workdir RUN on DIR/dev.tsv (single sentences: finetune.builtin_tasks' docstring_kind)
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

WORDS = (
  "the a river city red blue green house john mary paris london went saw film movie north south "
  "road big small one two three four five what who where when is was of in to and it this that"
).split()
CUES = ("great", "awful")


def sentence(rng: random.Random) -> tuple[str, int]:
  cues = [rng.choice(CUES) for _ in range(3)]
  words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))] + cues
  rng.shuffle(words)
  return " ".join(words), int(cues.count("great") >= 2)


def write_task(directory: str, n_train: int, n_dev: int) -> None:
  rng = random.Random(0)
  for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
      f.write("sentence\tlabel\n")
      for _ in range(n):
        text, label = sentence(rng)
        f.write(f"{text}\t{label}\n")


def make_checkpoint(directory: str) -> str:
  import jax
  import jax.numpy as jnp
  from flax import linen as nn

  import albert_flax as af

  rng = random.Random(1)
  corpus = os.path.join(directory, "corpus.txt")
  with open(corpus, "w", encoding="utf-8") as f:
    for _ in range(2000):
      f.write(sentence(rng)[0] + ".\n")
  spm = af.train_tokenizer(corpus, 200, os.path.join(directory, "spiece"), hard_vocab_limit=False)
  config = af.AlbertConfig.preset("tiny").replace(vocab_size=af.AlbertTokenizer(spm).vocab_size)
  model = af.AlbertModel(config)
  params = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 8), jnp.int32))["params"]
  path = os.path.join(directory, "base")
  af.save_pretrained(path, model, nn.meta.unbox(params), format="orbax", tokenizer=spm)
  return path


def dev_set(directory: str, tokenizer, seq: int):
  rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(directory, "dev.tsv"))][1:]
  enc = tokenizer(
    [r[0] for r in rows], max_length=seq, truncation=True, padding="max_length", return_tensors="np"
  )
  inputs = tuple(enc[k].astype(np.int32) for k in ("input_ids", "attention_mask", "token_type_ids"))
  return inputs, np.array([int(r[1]) for r in rows])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", default=None)
  p.add_argument("--train-steps", type=int, default=400)
  p.add_argument("--n-train", type=int, default=2048)
  p.add_argument("--n-dev", type=int, default=1024)
  p.add_argument("--seq", type=int, default=64)
  p.add_argument("--finetuned", default=None, help="a fine-tuning workdir to score instead")
  p.add_argument("--data", default=None, help="with --finetuned: the folder of its dev.tsv")
  args = p.parse_args()
  if args.finetuned:
    if not args.data:
      p.error("--finetuned needs --data (the folder holding dev.tsv)")
    common.print_machine(common.machine_info())
    return score(args.finetuned, args.data, args.seq)
  root = args.workdir or tempfile.mkdtemp(prefix="int8_")
  os.makedirs(root, exist_ok=True)
  info = common.machine_info()
  common.print_machine(info)
  data = os.path.join(root, "data")
  run = os.path.join(root, "run")
  if os.path.exists(os.path.join(run, "eval_results.json")):  # fine-tuned before: score it again
    return score(run, data, args.seq)
  os.makedirs(data, exist_ok=True)
  write_task(data, args.n_train, args.n_dev)
  base = make_checkpoint(root)
  command = [
    sys.executable,
    "-m",
    "finetune",
    "--config=finetune/configs/glue.py",
    f"--workdir={run}",
    "--config.task=sst2",
    f"--config.init_from={base}",
    f"--config.data_dir={data}",
    f"--config.train_steps={args.train_steps}",
    "--config.warmup_steps=20",
    "--config.learning_rate=5e-4",
    "--config.batch_size=32",
    f"--config.max_seq_length={args.seq}",
    "--config.progress_bar=False",
    "--config.tensorboard=False",
  ]
  print("# " + " ".join(command[1:]), flush=True)
  started = time.time()
  subprocess.run(command, check=True, cwd=os.path.dirname(os.path.dirname(__file__)) or ".")
  print(f"# fine-tuned in {time.time() - started:.0f} s", flush=True)
  score(run, data, args.seq)


def score(run: str, data: str, seq: int) -> None:
  """Dev accuracy, agreement with float32, parameter bytes and latency of each side."""
  import jax

  import albert_flax as af
  from albert_flax.quantize_int8 import size_in_bytes

  model, params = af.from_pretrained(run)
  tokenizer = af.load_tokenizer(os.path.join(run, "model"))
  inputs, labels = dev_set(data, tokenizer, seq)
  sides = {"float32": (model, params)}
  sides["int8 weights"] = af.quantize(model, params)
  sides["int8 weights + activations"] = af.quantize(model, params, activations=True)
  batch = tuple(x[:32] for x in inputs)
  fns, reference = {}, None
  for name, (m, p_) in sides.items():
    fn = jax.jit(lambda p, i, a, t, m=m: m.apply({"params": p}, i, a, t).logits)
    logits = np.concatenate(
      [np.asarray(fn(p_, *(x[i : i + 256] for x in inputs))) for i in range(0, len(labels), 256)]
    )
    reference = logits if reference is None else reference
    accuracy = 100 * float((logits.argmax(-1) == labels).mean())
    agree = 100 * float((logits.argmax(-1) == reference.argmax(-1)).mean())
    print(
      f"{name:28s} dev accuracy {accuracy:6.2f}  same prediction as float32 {agree:6.2f}%  "
      f"max |logit - float32| {np.abs(logits - reference).max():.4f} (of max |logit| "
      f"{np.abs(reference).max():.2f})  parameter bytes {size_in_bytes(p_):9d}"
    )
    fns[name] = lambda fn=fn, p_=p_: jax.block_until_ready(fn(p_, *batch))
  timings = common.interleave(fns, repeats=5, calls=5)
  for name in fns:
    print(f"{name:28s} latency (32 x {seq}) {common.Spread.of(timings.wall[name]).fmt(4)} s")


if __name__ == "__main__":
  main()
