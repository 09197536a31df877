r"""Writes statically masked ALBERT pretraining examples to ArrayRecord shards.

    python -m pretrain.create_data --input='corpus/*.txt' --spm_model=spiece.model \
        --output_dir=/data/albert_512 --max_seq_length=512 --dupe_factor=10

As the original create_pretraining_data.py: every document is used `dupe_factor` times, each time
with new sentence-order pairs and new masks. Unlike it, the corpus is streamed in windows of
`--shuffle_buffer` documents (examples are shuffled within a window), so memory does not grow
with the corpus. The output (`pretrain-XXXXX-of-YYYYY.array_record` and `pretraining_data.json`) is
read back with `make_pretraining_batches(static_shards="DIR/*.array_record", ...)`. The same
flags and seed give the same files.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from pretrain import corpus, data, pipeline, shards
from pretrain.examples import (
  ExampleConfig,
  concat_examples,
  make_examples,
  num_examples,
  tokenize_documents,
)


class _AllVariants(grain.transforms.Map):
  """A window of documents -> all `dupe_factor` variants of its examples, shuffled together."""

  def __init__(self, tokenizer: Any, config: ExampleConfig, dupe_factor: int, seed: int):
    self.tokenizer, self.config, self.dupe_factor, self.seed = tokenizer, config, dupe_factor, seed

  def map(self, window: dict[str, Any]) -> dict[str, np.ndarray]:
    tok = tokenize_documents(window["documents"], self.tokenizer)
    w, seed = window["window"], self.seed
    parts = [
      make_examples(tok, self.config, self.tokenizer, (seed, dupe, w))
      for dupe in range(self.dupe_factor)
    ]
    ex = concat_examples(parts)
    order = np.random.default_rng([seed, w, 0x5A]).permutation(num_examples(ex))
    return {k: v[order] for k, v in ex.items()}


def create_data(
  input_files: str | Sequence[str] | None,
  spm_model: str,
  output_dir: str,
  *,
  max_seq_length: int = 512,
  max_predictions_per_seq: int = 20,
  masked_lm_prob: float = 0.15,
  short_seq_prob: float = 0.1,
  max_ngram: int = 3,
  dupe_factor: int = 10,
  seed: int = 12345,
  num_shards: int = 8,
  shuffle_buffer: int = data.DEFAULT_SHUFFLE_BUFFER_DOCS,
  num_workers: int = 0,
  split: str | None = None,
  do_lower_case: bool = True,
  tfds_name: str | None = None,
  tfds_split: str = "train",
  tfds_data_dir: str | None = None,
  cache_dir: str | None = None,
  log_every: float = 30.0,
) -> dict[str, Any]:
  """Writes the shards; returns the information also written to `pretraining_data.json`."""
  if dupe_factor < 1:
    raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
  config = ExampleConfig(
    max_seq_length, max_predictions_per_seq, masked_lm_prob, short_seq_prob, max_ngram
  )
  stale = glob.glob(os.path.join(output_dir, "*.array_record"))
  if stale:
    # Readers glob the directory: old shards would silently join the new ones.
    raise FileExistsError(
      f"output_dir {output_dir!r} already holds {len(stale)} .array_record "
      "files; remove them or choose another directory"
    )
  tokenizer = data.load_tokenizer(spm_model, do_lower_case)
  source, builtin_split = data.make_source(
    input_files,
    tfds_name=tfds_name,
    tfds_split=tfds_split,
    tfds_data_dir=tfds_data_dir,
    cache_dir=cache_dir,
  )
  stream = data.TextStream(
    source, tokenizer, config, shuffle_buffer, seed, 0, 1, split or builtin_split, num_epochs=1
  )
  windows = stream.windows().map(_AllVariants(tokenizer, config, dupe_factor, seed))
  if num_workers:
    pipeline.allow_unparsed_absl_flags()
    windows = windows.mp_prefetch(grain.MultiprocessingOptions(num_workers))
  writer = shards.ShardWriter(output_dir, num_shards)
  start = last_log = time.time()
  total = 0
  examples = iter(windows)
  try:
    for ex in examples:
      writer.write(ex)
      total += num_examples(ex)
      if time.time() - last_log > log_every:
        last_log = time.time()
        print(f"create_data: {total} examples, {total / (last_log - start):.0f}/s", flush=True)
  finally:
    writer.close()
    getattr(examples, "close", lambda: None)()  # Stops mp_prefetch workers.
  if total == 0:
    raise ValueError(
      f"{stream.name}: no pretraining examples (a pair needs a document chunk of "
      "at least two sentences)"
    )
  info = {
    "source": stream.name,
    "spm_model": str(spm_model),
    "do_lower_case": do_lower_case,
    "vocab_size": tokenizer.vocab_size,
    "max_seq_length": max_seq_length,
    "max_predictions_per_seq": max_predictions_per_seq,
    "masked_lm_prob": masked_lm_prob,
    "short_seq_prob": short_seq_prob,
    "max_ngram": max_ngram,
    "dupe_factor": dupe_factor,
    "seed": seed,
    "split": split or builtin_split,
    "num_examples": total,
    "shards": [
      {"file": os.path.basename(p), "num_examples": c} for p, c in zip(writer.paths, writer.counts)
    ],
  }
  shards.write_info(output_dir, info)
  return info


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(
    prog="python -m pretrain.create_data",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument(
    "--input",
    help="text files (comma-separated globs) in the original format, or "
    "'builtin', 'builtin:train', 'builtin:eval'; omit with --tfds_name",
  )
  p.add_argument(
    "--tfds_name", help="a tensorflow-datasets text data set, e.g. wikipedia/20230601.en"
  )
  p.add_argument("--tfds_split", default="train")
  p.add_argument("--tfds_data_dir")
  p.add_argument("--spm_model", required=True, help="SentencePiece model (spiece.model)")
  p.add_argument("--do_lower_case", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--output_dir", required=True)
  p.add_argument("--max_seq_length", type=int, default=512)
  p.add_argument("--max_predictions_per_seq", type=int, default=20)
  p.add_argument("--masked_lm_prob", type=float, default=0.15)
  p.add_argument("--short_seq_prob", type=float, default=0.1)
  p.add_argument("--max_ngram", type=int, default=3)
  p.add_argument("--dupe_factor", type=int, default=10)
  p.add_argument("--random_seed", type=int, default=12345)
  p.add_argument("--num_shards", type=int, default=8)
  p.add_argument(
    "--shuffle_buffer",
    type=int,
    default=data.DEFAULT_SHUFFLE_BUFFER_DOCS,
    help="documents per window (memory is proportional to it)",
  )
  p.add_argument("--num_workers", type=int, default=0, help="worker processes")
  p.add_argument(
    "--split",
    choices=["train", "eval"],
    default=None,
    help="keep only the train or the held-out eval documents",
  )
  p.add_argument("--cache_dir", help="cache of the built-in corpus")
  args = p.parse_args(argv)
  if (args.input is None) == (args.tfds_name is None):
    p.error("give exactly one of --input and --tfds_name")
  if args.split is not None:
    corpus.check_split(args.split)
  info = create_data(
    args.input,
    args.spm_model,
    args.output_dir,
    max_seq_length=args.max_seq_length,
    max_predictions_per_seq=args.max_predictions_per_seq,
    masked_lm_prob=args.masked_lm_prob,
    short_seq_prob=args.short_seq_prob,
    max_ngram=args.max_ngram,
    dupe_factor=args.dupe_factor,
    seed=args.random_seed,
    num_shards=args.num_shards,
    shuffle_buffer=args.shuffle_buffer,
    num_workers=args.num_workers,
    split=args.split,
    do_lower_case=args.do_lower_case,
    tfds_name=args.tfds_name,
    tfds_split=args.tfds_split,
    tfds_data_dir=args.tfds_data_dir,
    cache_dir=args.cache_dir,
  )
  print(
    f"create_data: wrote {info['num_examples']} examples to {args.output_dir} "
    f"({len(info['shards'])} shards)"
  )
  return info


if __name__ == "__main__":
  main(sys.argv[1:])
