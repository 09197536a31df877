r"""Writes statically masked ALBERT pretraining examples to ArrayRecord shards.

    python -m pretrain.create_data --input='corpus/*.txt' --spm_model=spiece.model \
        --output_dir=/data/albert_512 --max_seq_length=512 --dupe_factor=10

As the original create_pretraining_data.py: every document is used `dupe_factor` times, each time
with new sentence-order pairs and new masks (`--sentence_pairs=nsp`: BERT's next-sentence pairs,
for `--config.sentence_loss=nsp` runs). Unlike it, the corpus is streamed in windows of
`--shuffle_buffer` documents (examples are shuffled within a window), so memory does not grow
with the corpus. The output (`pretrain-XXXXX-of-YYYYY.array_record` and `pretraining_data.json`) is
read back with `make_pretraining_batches(static_shards="DIR/*.array_record", ...)`. The same
flags and seed give the same files. Inputs and --output_dir may be gs:// URLs: array_record writes
local files only, so shards for a bucket are written to a local temporary folder and copied there
at the end (array_record reads them from the bucket directly).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np
from absl import flags
from etils import epath

from albert_flax import upstream
from pretrain import data, shards
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
  sentence_pairs: str = "sop",
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
    max_seq_length,
    max_predictions_per_seq,
    masked_lm_prob,
    short_seq_prob,
    max_ngram,
    sentence_pairs=sentence_pairs,
  )
  _check_no_shards(output_dir)
  tokenizer = data.load_tokenizer(spm_model, do_lower_case)
  tfds = data.TfdsDataset(tfds_name, tfds_split, tfds_data_dir) if tfds_name is not None else None
  source, builtin_split = data.make_source(input_files, tfds=tfds, cache_dir=cache_dir)
  stream = data.TextStream(
    source, tokenizer, config, shuffle_buffer, seed, 0, 1, split or builtin_split, num_epochs=1
  )
  windows = stream.windows().map(_AllVariants(tokenizer, config, dupe_factor, seed))
  if num_workers:
    upstream.allow_unparsed_absl_flags()  # GRAIN_UNPARSED_ABSL_FLAGS
    windows = windows.mp_prefetch(grain.MultiprocessingOptions(num_workers))
  writer = shards.ShardWriter(output_dir, num_shards)
  total = _write_all(windows, writer, log_every)
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
    "sentence_pairs": sentence_pairs,
    "dupe_factor": dupe_factor,
    "seed": seed,
    "split": split or builtin_split,
    "num_examples": total,
    "shards": [
      {"file": epath.Path(p).name, "num_examples": c} for p, c in zip(writer.paths, writer.counts)
    ],
  }
  shards.write_info(output_dir, info)
  return info


def _check_no_shards(output_dir: str) -> None:
  """Readers glob the directory: old shards would silently join the new ones."""
  stale = list(epath.Path(output_dir).glob("*.array_record"))
  if stale:
    raise FileExistsError(
      f"output_dir {output_dir!r} already holds {len(stale)} .array_record "
      "files; remove them or choose another directory"
    )


def _write_all(windows: grain.IterDataset, writer: shards.ShardWriter, log_every: float) -> int:
  """Every window's examples into the shards, with a progress line every `log_every` seconds;
  closes the writer. Returns how many examples were written."""
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
  return total


# absl flags, as the programs (`python -m pretrain|finetune`), on a FlagValues of their own: `main`
# parses a fresh argv on every call (tests and notebooks call it in-process) without touching the
# program's flags.
FLAGS = flags.FlagValues()
_INPUT = flags.DEFINE_string(
  "input",
  None,
  "text files (comma-separated globs, local or gs://) in the original format, or "
  "'builtin', 'builtin:train', 'builtin:eval'; omit with --tfds_name",
  flag_values=FLAGS,
)
_TFDS_NAME = flags.DEFINE_string(
  "tfds_name",
  None,
  "a tensorflow-datasets text data set, e.g. wikipedia/20230601.en",
  flag_values=FLAGS,
)
_TFDS_SPLIT = flags.DEFINE_string("tfds_split", "train", "its split", flag_values=FLAGS)
_TFDS_DATA_DIR = flags.DEFINE_string(
  "tfds_data_dir", None, "tensorflow-datasets data_dir (local or gs://)", flag_values=FLAGS
)
_SPM_MODEL = flags.DEFINE_string(
  "spm_model",
  None,
  "SentencePiece model (spiece.model), or a WordPiece vocab.txt",
  required=True,
  flag_values=FLAGS,
)
_DO_LOWER_CASE = flags.DEFINE_bool("do_lower_case", True, "lower-case text", flag_values=FLAGS)
_OUTPUT_DIR = flags.DEFINE_string(
  "output_dir", None, "where the shards go (local or gs://)", required=True, flag_values=FLAGS
)
_MAX_SEQ_LENGTH = flags.DEFINE_integer(
  "max_seq_length", 512, "tokens per example", flag_values=FLAGS
)
_MAX_PREDICTIONS = flags.DEFINE_integer(
  "max_predictions_per_seq", 20, "masked tokens per example at most", flag_values=FLAGS
)
_MASKED_LM_PROB = flags.DEFINE_float("masked_lm_prob", 0.15, "masked fraction", flag_values=FLAGS)
_SHORT_SEQ_PROB = flags.DEFINE_float(
  "short_seq_prob", 0.1, "probability of a shorter example", flag_values=FLAGS
)
_MAX_NGRAM = flags.DEFINE_integer("max_ngram", 3, "longest masked n-gram", flag_values=FLAGS)
_SENTENCE_PAIRS = flags.DEFINE_enum(
  "sentence_pairs",
  "sop",
  ["sop", "nsp"],
  "sentence-order pairs (ALBERT) or next-sentence pairs (BERT)",
  flag_values=FLAGS,
)
_DUPE_FACTOR = flags.DEFINE_integer(
  "dupe_factor", 10, "times each document is used (new pairs and masks)", flag_values=FLAGS
)
_RANDOM_SEED = flags.DEFINE_integer("random_seed", 12345, "seed", flag_values=FLAGS)
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 8, "output files", flag_values=FLAGS)
_SHUFFLE_BUFFER = flags.DEFINE_integer(
  "shuffle_buffer",
  data.DEFAULT_SHUFFLE_BUFFER_DOCS,
  "documents per window (memory is proportional to it)",
  flag_values=FLAGS,
)
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 0, "worker processes", flag_values=FLAGS)
_SPLIT = flags.DEFINE_enum(
  "split",
  None,
  ["train", "eval"],
  "keep only the train or the held-out eval documents",
  flag_values=FLAGS,
)
_CACHE_DIR = flags.DEFINE_string(
  "cache_dir", None, "cache of the built-in corpus", flag_values=FLAGS
)
flags.register_multi_flags_validator(
  ["input", "tfds_name"],
  lambda v: (v["input"] is None) != (v["tfds_name"] is None),
  "give exactly one of --input and --tfds_name",
  flag_values=FLAGS,
)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """`python -m pretrain.create_data --flag=value ...`; `argv` are the flags (no program name).

  Bad flags print the problem and exit with status 2, as the programs do.
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  if {"--help", "-h", "--helpfull"} & set(argv):
    print(f"{__doc__}\n{FLAGS.get_help()}")
    sys.exit(0)
  FLAGS.unparse_flags()  # a fresh parse: nothing carries over from an earlier call
  try:
    rest = FLAGS(["python -m pretrain.create_data", *argv])
  except flags.Error as e:
    print(f"error: {e}\nPass --help for the flags.", file=sys.stderr, flush=True)
    sys.exit(2)
  if len(rest) > 1:
    print(f"error: unexpected arguments {rest[1:]}", file=sys.stderr, flush=True)
    sys.exit(2)
  info = create_data(
    _INPUT.value,
    _SPM_MODEL.value,
    _OUTPUT_DIR.value,
    max_seq_length=_MAX_SEQ_LENGTH.value,
    max_predictions_per_seq=_MAX_PREDICTIONS.value,
    masked_lm_prob=_MASKED_LM_PROB.value,
    short_seq_prob=_SHORT_SEQ_PROB.value,
    max_ngram=_MAX_NGRAM.value,
    sentence_pairs=_SENTENCE_PAIRS.value,
    dupe_factor=_DUPE_FACTOR.value,
    seed=_RANDOM_SEED.value,
    num_shards=_NUM_SHARDS.value,
    shuffle_buffer=_SHUFFLE_BUFFER.value,
    num_workers=_NUM_WORKERS.value,
    split=_SPLIT.value,
    do_lower_case=_DO_LOWER_CASE.value,
    tfds_name=_TFDS_NAME.value,
    tfds_split=_TFDS_SPLIT.value,
    tfds_data_dir=_TFDS_DATA_DIR.value,
    cache_dir=_CACHE_DIR.value,
  )
  print(
    f"create_data: wrote {info['num_examples']} examples to {_OUTPUT_DIR.value} "
    f"({len(info['shards'])} shards)"
  )
  return info


if __name__ == "__main__":
  main()
