"""ALBERT pretraining examples: sentence-order pairs with n-gram whole-word masking, as batches.

    import albert_flax as af
    from pretrain import data
    tok = af.AlbertTokenizer("spiece.model")
    batches = data.make_pretraining_batches("corpus/*.txt", tok, batch_size=64,
                                            max_seq_length=512, max_predictions_per_seq=20, seed=0)
    batch = next(batches)          # dict of numpy arrays, see below
    state = batches.get_state()    # small JSON-serializable dict: save it with the checkpoint
    batches = data.make_pretraining_batches(..., state=state)   # or batches.set_state(state)

Sources (`files`): text files in the original format (one sentence per line, a blank line between
documents; a glob, comma-separated globs or a list); None / "builtin" for the built-in corpus (the
Python standard library's docstrings; "builtin:train" and "builtin:eval" hold out ~2% of its
documents for evaluation); `tfds_name=` for a tensorflow-datasets text data set; `static_shards=`
(or files ending in .array_record) for examples written by `python -m pretrain.create_data`.

Examples are made as the original ALBERT create_pretraining_data.py makes them (see
`pretrain/sop.py` and `pretrain/masking.py`), masked afresh each time they are seen (dynamic
masking) unless read from static shards. Each process reads a disjoint share of the documents
(`jax.process_index()` of `jax.process_count()` unless given); `batch_size` is the number of
examples per batch of this process. Documents are handled in windows of `shuffle_buffer`
documents (pairs are shuffled within a window; the file order is shuffled every epoch), so memory
does not grow with the corpus. Static shards are shuffled globally (a new permutation of all
records every epoch, process p taking every n-th). The pipeline runs on grain (see
`pretrain/pipeline.py`): `num_workers` are its `mp_prefetch` processes.

Batches: input_ids, attention_mask, token_type_ids [B, S] int32 (`[CLS] A [SEP] B [SEP]`, right
padding with id 0; token type 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`); masked_lm_positions,
masked_lm_ids [B, P] int32; masked_lm_weights [B, P] float32 (0 on padding predictions);
sentence_order_label [B] int32 (1 = the two segments are swapped).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

import albert_flax as af
from pretrain import builtin_corpus, corpus, word_segmentation
from pretrain.examples import ExampleConfig
from pretrain.pipeline import BATCH_KEYS, PretrainingIterator
from pretrain.streams import StaticStream, TextStream

__all__ = [
  "make_pretraining_batches",
  "DataOptions",
  "TfdsDataset",
  "PretrainingIterator",
  "ExampleConfig",
  "BATCH_KEYS",
  "make_source",
  "split_corpus",
  "load_tokenizer",
  "TextStream",
  "StaticStream",
]

DEFAULT_SHUFFLE_BUFFER_DOCS = 1024


# ----------------------------------------------------------------------------- entry points


def load_tokenizer(tokenizer: Any, do_lower_case: bool = True) -> Any:
  """The tokenizer of a path (a spiece.model or a WordPiece vocab.txt: `af.load_tokenizer`), or
  the tokenizer as given."""
  if isinstance(tokenizer, (str, os.PathLike)):
    return af.load_tokenizer(tokenizer, do_lower_case=do_lower_case)
  return tokenizer


@dataclasses.dataclass(frozen=True)
class TfdsDataset:
  """A tensorflow-datasets text data set as the documents: `field` of each example of `split`
  (the data set must be prepared unless download=True)."""

  name: str
  split: str = "train"
  data_dir: str | None = None
  field: str = "text"
  download: bool = False

  def source(self) -> corpus.TfdsSource:
    return corpus.TfdsSource(self.name, self.split, self.data_dir, self.field, self.download)


def make_source(
  files: str | Sequence[str] | None,
  *,
  tfds: TfdsDataset | None = None,
  cache_dir: str | None = None,
  shard_by: str = "auto",
) -> tuple[corpus.DocumentSource, str | None]:
  """The document source of `files` / `tfds`, and the split a "builtin:<split>" asks for."""
  if tfds is not None:
    if files not in (None, "", []):
      raise ValueError(f"give either files or tfds_name, not both (files={files!r})")
    return tfds.source(), None
  if files is None or (isinstance(files, str) and files.split(":")[0] == "builtin"):
    split = files.split(":", 1)[1] if isinstance(files, str) and ":" in files else None
    corpus.check_split(split)
    return builtin_corpus.builtin_source(cache_dir), split
  return corpus.TextFileSource(files, shard_by=shard_by), None


def is_static(files: Any) -> bool:
  """Whether `files` names static shards (.array_record) rather than text."""
  names = [files] if isinstance(files, str) else list(files or [])
  return bool(names) and all(
    str(n).endswith(".array_record") or str(n).endswith(".array_record*") for n in names
  )


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """How `make_pretraining_batches` reads documents and makes examples, beyond the batch's shape
  and seed. Its keyword arguments are these fields by name, with `tfds_name`, `tfds_split`,
  `tfds_data_dir`, `tfds_field`, `tfds_download` for `tfds` (`DataOptions.of`).

  Fields:
    masked_lm_prob, short_seq_prob, max_ngram: as the original flags (0.15, 0.1, 3).
    num_epochs: passes over the data; None repeats forever. Each pass makes new pairs and masks.
    shuffle_buffer: documents per window (text; default 1024): memory is proportional to it.
      Static shards are shuffled globally and ignore it.
    process_index, process_count: this process's share (default: jax.process_index()/count()).
    num_workers: grain `mp_prefetch` worker processes making examples (0: in this process).
      Results and states do not depend on it. Workers are spawned: call from under
      `if __name__ == "__main__":` in scripts.
    split: None/"all", "train" or "eval": keep all documents, or hold out the `eval_fraction`
      of them chosen by a hash of their first sentence (for any text source). Static shards
      accept None/"all"/"train" (all their examples).
    tfds: read a tensorflow-datasets text data set instead of files (a `TfdsDataset`).
    static_shards: glob/list of ArrayRecord shards written by `python -m pretrain.create_data`.
    cache_dir: where the built-in corpus is cached.
    shard_by: "auto", "file" or "document": how text files are shared among processes.
    drop_remainder: drop the last incomplete batch (only happens with num_epochs set).
    do_lower_case: used when `tokenizer` is a path.
    word_segmenter: Chinese whole-word masking with a WordPiece tokenizer: "jieba" segments runs
      of CJK characters into words, each masked whole; None: every CJK character is a word, as
      the original (see `pretrain.word_segmentation`).
    example_options: further fields of `ExampleConfig` (how examples are made).
  """

  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1
  max_ngram: int = 3
  num_epochs: int | None = None
  shuffle_buffer: int | None = None
  process_index: int | None = None
  process_count: int | None = None
  num_workers: int = 0
  split: str | None = None
  eval_fraction: float = corpus.DEFAULT_EVAL_FRACTION
  tfds: TfdsDataset | None = None
  static_shards: str | Sequence[str] | None = None
  cache_dir: str | None = None
  shard_by: str = "auto"
  drop_remainder: bool = True
  do_lower_case: bool = True
  word_segmenter: str | None = None
  example_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def of(cls, options: DataOptions | None = None, **keywords: Any) -> DataOptions:
    """`options` (default: the defaults) with `keywords` replacing fields: `tfds_<field>` ones
    make `tfds` (with `tfds_name`), names that are no field are ExampleConfig fields."""
    options = options or cls()
    tfds = {k[len("tfds_") :]: keywords.pop(k) for k in list(keywords) if k.startswith("tfds_")}
    if "name" in tfds:  # tfds_name=None: files, not tfds
      keywords["tfds"] = TfdsDataset(**tfds) if tfds["name"] is not None else None
    elif tfds and options.tfds is not None:
      keywords["tfds"] = dataclasses.replace(options.tfds, **tfds)
    fields = {f.name for f in dataclasses.fields(cls)}
    extra = {k: keywords.pop(k) for k in list(keywords) if k not in fields}
    if extra:
      keywords["example_options"] = {**options.example_options, **extra}
    return dataclasses.replace(options, **keywords)


def make_pretraining_batches(
  files: str | Sequence[str] | None,
  tokenizer: Any,
  batch_size: int,
  max_seq_length: int,
  max_predictions_per_seq: int,
  seed: int = 0,
  *,
  options: DataOptions | None = None,
  state: dict | None = None,
  **keywords: Any,
) -> PretrainingIterator:
  """Batches of ALBERT pretraining examples (SOP pairs, n-gram masking); see the module docstring.

  Args:
    files: text files (glob, comma-separated globs or list), None/"builtin"/"builtin:train"/
      "builtin:eval" for the built-in corpus, or .array_record static shards.
    tokenizer: an `albert_flax.AlbertTokenizer` or the path of its SentencePiece model (unused for
      static shards, may be None there).
    batch_size: examples per batch of this process (its share of the global batch).
    max_seq_length: S, the padded length, [CLS] and [SEP]s included.
    max_predictions_per_seq: P, masked positions per example (padded with weight 0).
    seed: the same seed and options give the same batches.
    options: how documents are read and examples made (`DataOptions`: masking probabilities,
      epochs, this process's share, workers, split, a tensorflow-datasets source, static
      shards, ...).
    state: a `get_state()` result to resume from.
    **keywords: `DataOptions` fields by name (tfds_name=..., num_workers=..., ...), replacing
      those of `options`; further `ExampleConfig` fields, e.g. sentence_pairs="nsp" for BERT's
      next-sentence pairs (static shards must have been written with the same kind).

  Returns:
    A `PretrainingIterator` (iterator of batch dicts with get_state/set_state/close).
  """
  o = DataOptions.of(options, **keywords)
  process_index, process_count = o.process_index, o.process_count
  if process_index is None or process_count is None:
    import jax  # Only for the default share; tests and tools pass both.

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
      f"need 0 <= process_index < process_count, got {process_index}, {process_count}"
    )
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative int, got {seed!r}")
  if o.num_epochs is not None and (not isinstance(o.num_epochs, int) or o.num_epochs < 1):
    raise ValueError(
      f"num_epochs must be None (repeat forever) or an int >= 1, got {o.num_epochs!r}"
    )
  config = ExampleConfig(
    max_seq_length,
    max_predictions_per_seq,
    o.masked_lm_prob,
    o.short_seq_prob,
    o.max_ngram,
    word_segmenter=o.word_segmenter or None,
    **o.example_options,
  )
  word_segmentation.check_segmenter(config.word_segmenter)
  share = (int(seed), process_index, process_count)
  static_shards = o.static_shards
  if static_shards is None and files is not None and is_static(files):
    static_shards, files = files, None
  if static_shards is not None:
    stream: TextStream | StaticStream = _static_stream(
      static_shards, files, config, batch_size, share, o
    )
  else:
    stream = _text_stream(files, tokenizer, config, share, o)
  return PretrainingIterator(
    stream,
    batch_size,
    drop_remainder=o.drop_remainder,
    num_workers=o.num_workers,
    state=state,
  )


def _static_stream(
  static_shards, files, config: ExampleConfig, batch_size: int, share, o: DataOptions
) -> StaticStream:
  """The stream of static shards; `share`: (seed, process index, process count)."""
  if files is not None or o.tfds is not None:
    raise ValueError("static_shards replaces files/tfds_name: give only one source")
  if o.split == "eval":
    # Shards hold examples, not documents: nothing is held out in them (create_data --split
    # writes train-only and eval-only shards). split="train" means all of their examples.
    raise ValueError(
      "split='eval' does not apply to static shards: write held-out shards "
      "with `python -m pretrain.create_data --split=eval` and read those"
    )
  seed, process_index, process_count = share
  return StaticStream(
    static_shards,
    config.max_seq_length,
    config.max_predictions_per_seq,
    batch_size,
    seed,
    process_index,
    process_count,
    o.num_epochs,
    config.sentence_pairs,
  )


def _text_stream(files, tokenizer, config: ExampleConfig, share, o: DataOptions) -> TextStream:
  """The stream of text documents (files, the built-in corpus or tfds), masked as it goes."""
  tokenizer = load_tokenizer(tokenizer, o.do_lower_case)
  source, builtin_split = make_source(
    files, tfds=o.tfds, cache_dir=o.cache_dir, shard_by=o.shard_by
  )
  if builtin_split is not None and o.split not in (None, builtin_split):
    raise ValueError(f"files={files!r} asks for split {builtin_split!r}, but split={o.split!r}")
  seed, process_index, process_count = share
  return TextStream(
    source,
    tokenizer,
    config,
    o.shuffle_buffer or DEFAULT_SHUFFLE_BUFFER_DOCS,
    seed,
    process_index,
    process_count,
    o.split or builtin_split,
    o.eval_fraction,
    o.num_epochs,
  )


def split_corpus(
  files: str | Sequence[str] | None,
  output_dir: str,
  eval_fraction: float = corpus.DEFAULT_EVAL_FRACTION,
  cache_dir: str | None = None,
) -> tuple[str, str]:
  """Writes `train.txt` and `eval.txt` (original format) holding out `eval_fraction` of documents.

  The rule is the one of `split="eval"` (a hash of each document's first sentence), streamed, so
  `make_pretraining_batches(files, split="eval")` and the written `eval.txt` agree.

  Returns:
    (train path, eval path).
  """
  source, _ = make_source(files, cache_dir=cache_dir)
  output = epath.Path(output_dir)
  output.mkdir(parents=True, exist_ok=True)
  paths = (str(output / "train.txt"), str(output / "eval.txt"))
  counts = [0, 0]
  with epath.Path(paths[0]).open("w") as train, epath.Path(paths[1]).open("w") as ev:
    for doc, _ in source.documents(0, None, 0, 1, seed=0):
      held_out = corpus.in_eval_split(doc[0], eval_fraction)
      (ev if held_out else train).write("\n".join(doc) + "\n\n")
      counts[held_out] += 1
  for path, count in zip(paths, counts):
    if count == 0:
      raise ValueError(
        f"split_corpus: {path!r} would be empty ({counts[0]} train and {counts[1]} "
        f"eval documents from {source.name}); change eval_fraction"
      )
  return paths
