"""Training of ALBERT's SentencePiece vocabulary (`train_tokenizer`) and of a BERT WordPiece
vocabulary for Chinese models (`train_wordpiece_vocab`).

A unigram model with ids 0..4 = <pad>, <unk>, [CLS], [SEP], [MASK], trained on text normalized as
`AlbertTokenizer` normalizes it (`text_normalization`), streaming the files and drawing a seeded
sample of the lines (sentencepiece's own sampler ignores the seed). Kept apart from
`tokenization.py`, which encodes text: training is run once per vocabulary, encoding in every data
pipeline.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import random
import tempfile
from collections.abc import Iterator, Sequence

import sentencepiece as spm

from albert_flax import paths
from albert_flax.tokenization.text_normalization import normalize_text
from albert_flax.tokenization.wordpiece import bert_normalizer

log = logging.getLogger(__name__)

# The special pieces and the ids the released ALBERT models (and train_tokenizer) give them.
SPECIAL_PIECES = {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


def _expand_files(files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
  """The input files (local or gs://...; glob patterns expanded, sorted: the same order, and
  model, on every run)."""
  patterns = [files] if isinstance(files, (str, os.PathLike)) else list(files)
  if not patterns:
    raise ValueError("train_tokenizer: no input files given")
  found: list[str] = []
  for pattern in map(os.fspath, patterns):
    if glob.has_magic(pattern):
      matched = paths.glob(pattern)
      if not matched:
        raise FileNotFoundError(f"train_tokenizer: no file matches {pattern!r}")
      found += matched
    elif paths.path(pattern).is_file():
      found.append(pattern)
    else:
      raise FileNotFoundError(f"train_tokenizer: input file not found: {pattern!r}")
  for path in found:
    with paths.open_text(path) as f:  # stop at the first line with text
      if all(line.isspace() for line in f):
        raise ValueError(f"train_tokenizer: input file {path!r} holds no text")
  return found


def _nonblank_lines(files: Sequence[str]) -> Iterator[str]:
  for path in files:
    with paths.open_text(path) as f:  # streamed, also from a bucket
      for line in f:
        if not line.isspace():
          yield line


def _sampled_lines(
  files: Sequence[str], sample_size: int, shuffle: bool, seed: int
) -> Iterator[str]:
  """Non-blank lines, streamed, keeping `sample_size` of them (0: all).

  The sample is drawn here, not by sentencepiece: its own sampler ignores the random seed, so the
  model would change from run to run. With shuffle, a uniform sample of exactly `sample_size`
  lines (Knuth's selection sampling: one pass, no memory, after a pass that counts the lines);
  without, the first `sample_size` lines.
  """
  lines: Iterator[str] = _nonblank_lines(files)
  if sample_size > 0 and shuffle:
    total = sum(1 for _ in _nonblank_lines(files))
    if total > sample_size:
      rng = random.Random(seed)

      def sampled(lines: Iterator[str], need: int, left: int) -> Iterator[str]:
        for line in lines:
          if rng.random() * left < need:  # keep with probability need / left
            need -= 1
            yield line
            if need == 0:
              return
          left -= 1

      lines = sampled(lines, sample_size, total)
  elif sample_size > 0:
    lines = itertools.islice(lines, sample_size)
  return lines


def _training_lines(
  files: Sequence[str], sample_size: int, shuffle: bool, seed: int, **norm: bool
) -> Iterator[str]:
  """The sampled lines, normalized as the tokenizer normalizes text, for sentencepiece."""
  for line in _sampled_lines(files, sample_size, shuffle, seed):
    line = normalize_text(line, **norm)
    if line:
      yield line


def train_tokenizer(
  files: str | os.PathLike | Sequence[str | os.PathLike],
  vocab_size: int,
  model_prefix: str | os.PathLike,
  *,
  input_sentence_size: int = 10_000_000,
  shuffle_input_sentence: bool = True,
  character_coverage: float = 0.99995,
  num_threads: int = os.cpu_count() or 1,
  do_lower_case: bool = True,
  keep_accents: bool = False,
  user_defined_symbols: Sequence[str] = (),
  seed: int = 0,
  hard_vocab_limit: bool = True,
) -> str:
  """Train ALBERT's SentencePiece unigram model; returns the path `<model_prefix>.model`
  (`model_prefix` local or gs://...: sentencepiece writes into a local folder, then the
  .model and .vocab files are uploaded).

  Ids 0..4 are <pad>, <unk>, [CLS], [SEP], [MASK] (no BOS/EOS), as in the released ALBERT
  vocabulary.
  Each line of the files (paths or glob patterns, UTF-8) is a sentence, normalized as
  `AlbertTokenizer(do_lower_case=do_lower_case, keep_accents=keep_accents)` normalizes text, so the
  pieces match what encoding sees. Lines are streamed and only a sample of `input_sentence_size`
  of them (0: all) reaches sentencepiece, so large corpora fit in memory: uniform and drawn
  with `seed` when shuffle_input_sentence, else the first lines.
  `user_defined_symbols` are always split off (the original used ALBERT_USER_DEFINED_SYMBOLS);
  `seed` makes the sample, hence the model, reproducible (for the same num_threads);
  hard_vocab_limit=False lets a small corpus give fewer than `vocab_size` pieces instead of failing.
  """
  _check_sizes(vocab_size, user_defined_symbols, input_sentence_size)
  inputs = _expand_files(files)
  options = dict(
    input_sentence_size=input_sentence_size,
    shuffle_input_sentence=shuffle_input_sentence,
    character_coverage=character_coverage,
    num_threads=num_threads,
    do_lower_case=do_lower_case,
    keep_accents=keep_accents,
    user_defined_symbols=user_defined_symbols,
    seed=seed,
    hard_vocab_limit=hard_vocab_limit,
  )
  if not paths.is_local(model_prefix):
    with tempfile.TemporaryDirectory() as tmp:
      local = train_tokenizer(inputs, vocab_size, os.path.join(tmp, "spiece"), **options)
      remote = paths.path(model_prefix)
      for suffix in (".vocab", ".model"):  # the model last: its presence means both are there
        with open(local[: -len(".model")] + suffix, "rb") as f:
          paths.write_bytes(remote.parent / (remote.name + suffix), f.read())
    return os.fspath(remote.parent / (remote.name + ".model"))
  prefix = os.fspath(model_prefix)
  if os.path.dirname(prefix):
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
  return _train_unigram(inputs, vocab_size, prefix, **options)


def _check_sizes(vocab_size: int, user_defined_symbols: Sequence[str], sample_size: int) -> None:
  if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_PIECES) + len(
    user_defined_symbols
  ):
    raise ValueError(
      f"vocab_size must be an int above the {len(SPECIAL_PIECES)} special pieces "
      f"and user-defined symbols, got {vocab_size!r}"
    )
  if not isinstance(sample_size, int) or sample_size < 0:
    raise ValueError(f"input_sentence_size must be an int >= 0 (0: all lines), got {sample_size!r}")


def _train_unigram(
  inputs: list[str],
  vocab_size: int,
  prefix: str,
  *,
  input_sentence_size: int,
  shuffle_input_sentence: bool,
  character_coverage: float,
  num_threads: int,
  do_lower_case: bool,
  keep_accents: bool,
  user_defined_symbols: Sequence[str],
  seed: int,
  hard_vocab_limit: bool,
) -> str:
  """sentencepiece's trainer on the sampled, normalized lines; `<prefix>.model`, its ids checked."""
  # A process-wide setting of sentencepiece, for whatever randomness its trainer has left.
  spm.set_random_generator_seed(int(seed))
  control = [SPECIAL_PIECES["cls"], SPECIAL_PIECES["sep"], SPECIAL_PIECES["mask"]]
  spm.SentencePieceTrainer.train(
    sentence_iterator=_training_lines(
      inputs,
      input_sentence_size,
      shuffle_input_sentence,
      seed,
      do_lower_case=do_lower_case,
      remove_space=True,
      keep_accents=keep_accents,
    ),
    model_prefix=prefix,
    model_type="unigram",
    vocab_size=vocab_size,
    pad_id=0,
    unk_id=1,
    bos_id=-1,
    eos_id=-1,
    pad_piece=SPECIAL_PIECES["pad"],
    unk_piece=SPECIAL_PIECES["unk"],
    control_symbols=control,
    user_defined_symbols=list(user_defined_symbols),
    input_sentence_size=0,  # already sampled
    character_coverage=character_coverage,
    num_threads=num_threads,
    hard_vocab_limit=hard_vocab_limit,
    minloglevel=1,  # warnings and errors only
  )
  path = prefix + ".model"
  sp = spm.SentencePieceProcessor(model_file=path)
  expected = [SPECIAL_PIECES[k] for k in ("pad", "unk", "cls", "sep", "mask")]
  got = [sp.IdToPiece(i) for i in range(len(expected))]
  if got != expected:
    raise RuntimeError(f"trained model {path!r} has ids 0..4 = {got}, expected {expected}")
  _say_if_smaller(sp.GetPieceSize(), vocab_size, "SentencePiece model")
  return path


def _say_if_smaller(size: int, asked: int, kind: str) -> None:
  """One log line when a trainer gave fewer pieces than asked (a small corpus)."""
  if size < asked:
    log.warning(
      "the trained %s has %d pieces, not the %d asked: the training text holds no more pieces "
      "worth keeping (a larger corpus gives more); the model's vocab_size is %d",
      kind, size, asked, size,
    )  # fmt: skip


# BERT's special tokens, as train_wordpiece_vocab lays them out (ids 0..4, ALBERT's order).
WORDPIECE_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece_vocab(
  files: str | os.PathLike | Sequence[str | os.PathLike],
  vocab_size: int,
  vocab_file: str | os.PathLike,
  *,
  do_lower_case: bool = True,
  input_sentence_size: int = 10_000_000,
  shuffle_input_sentence: bool = True,
  min_frequency: int = 2,
  seed: int = 0,
) -> str:
  """Train a BERT WordPiece vocabulary (for `WordPieceTokenizer`); returns `vocab_file`.

  With the `tokenizers` library's WordPiece trainer, on text cut as `WordPieceTokenizer` cuts it
  (BERT's normalizer and pre-tokenizer: every CJK character a word of its own), so the
  vocabulary holds every character of the sample plus the most useful "##" continuations. Ids
  0..4 are [PAD], [UNK], [CLS], [SEP], [MASK]. Files, sampling and `seed` as train_tokenizer.
  """
  from tokenizers import Tokenizer, models, pre_tokenizers, trainers

  if not isinstance(vocab_size, int) or vocab_size <= len(WORDPIECE_SPECIAL_TOKENS):
    raise ValueError(
      f"vocab_size must be an int above the {len(WORDPIECE_SPECIAL_TOKENS)} special tokens, "
      f"got {vocab_size!r}"
    )
  inputs = _expand_files(files)
  tokenizer = Tokenizer(models.WordPiece(unk_token=WORDPIECE_SPECIAL_TOKENS[1]))
  tokenizer.normalizer = bert_normalizer(do_lower_case)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  trainer = trainers.WordPieceTrainer(
    vocab_size=vocab_size,
    min_frequency=min_frequency,
    special_tokens=list(WORDPIECE_SPECIAL_TOKENS),
    continuing_subword_prefix="##",
    show_progress=False,
  )
  lines = _sampled_lines(inputs, input_sentence_size, shuffle_input_sentence, seed)
  tokenizer.train_from_iterator(lines, trainer)
  tokens = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
  path = os.fspath(vocab_file)
  if paths.is_local(path) and os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  paths.write_text(path, "".join(token + "\n" for token, _ in tokens))  # local or gs://...
  _say_if_smaller(len(tokens), vocab_size, "WordPiece vocabulary")
  return path
