"""Batch-encoding speed: albert_flax.AlbertTokenizer against transformers' slow AlbertTokenizer,
and albert_flax.WordPieceTokenizer (Chinese models' BERT vocabulary) against transformers' slow
BertTokenizer, on English text and on synthetic Chinese text.

Text: paragraphs of the Python standard library's docstrings (read from the stdlib sources with
`ast`, so nothing is imported or downloaded). Model: --model, or a unigram vocabulary trained
here on those paragraphs with albert_flax's train_tokenizer.

    python benchmarks/bench_tokenizer.py [--paragraphs 4000] [--vocab-size 8000] [--model
    spiece.model]

Prints texts/s and tokens/s of: ours __call__ (ids + masks) and encode_as_ids (the data pipeline's
path, all cores and one thread) against transformers' slow tokenizer __call__ and encode (the
reference; the fast Rust tokenizer is printed for orientation when it converts). Then the same
for WordPiece, on a vocabulary trained here (train_wordpiece_vocab) on those paragraphs plus as
many lines of seeded random common CJK characters and Chinese punctuation.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable

from albert_flax.tokenization import AlbertTokenizer, train_tokenizer
from albert_flax.tokenization.training import train_wordpiece_vocab
from albert_flax.tokenization.wordpiece import WordPieceTokenizer


def stdlib_paragraphs(limit: int) -> list[str]:
  """Up to `limit` docstring paragraphs (blank-line separated, >= 40 chars) of the stdlib."""
  root = sysconfig.get_paths()["stdlib"]
  out: list[str] = []
  for dirpath, dirnames, filenames in os.walk(root):
    skip = ("site-packages", "test", "tests", "idlelib")
    dirnames[:] = sorted(d for d in dirnames if d not in skip)  # sorted: the same text each run
    for name in sorted(filenames):
      if not name.endswith(".py"):
        continue
      try:
        with open(os.path.join(dirpath, name), encoding="utf-8") as f:
          tree = ast.parse(f.read())
      except (SyntaxError, UnicodeDecodeError, ValueError):
        continue
      for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
          doc = ast.get_docstring(node)
          for para in (doc or "").split("\n\n"):
            para = " ".join(para.split())
            if len(para) >= 40:
              out.append(para)
              if len(out) >= limit:
                return out
  return out


def chinese_lines(n: int, seed: int = 0) -> list[str]:
  """`n` lines of random characters of the 3,000 first CJK code points, with punctuation and an
  occasional Latin word (a stand-in for Chinese text: only the tokenizer's speed is measured)."""
  rng = random.Random(seed)
  out = []
  for _ in range(n):
    parts = []
    for _ in range(rng.randint(20, 120)):
      r = rng.random()
      parts.append(
        chr(0x4E00 + rng.randrange(3000))
        if r < 0.9
        else rng.choice("，。、；：！？")
        if r < 0.98
        else f" GPU{rng.randrange(100)} "
      )
    out.append("".join(parts))
  return out


def print_rows(rows: list[tuple[str, float, int]], n_texts: int) -> None:
  base = rows[0][1]
  print(f"{'':44s} {'texts/s':>10s} {'tokens/s':>12s} {'speed-up':>9s}")
  for name, seconds, tokens in rows:
    print(f"{name:44s} {n_texts / seconds:10.0f} {tokens / seconds:12.0f} {base / seconds:8.1f}x")


class Timings:
  """The table's rows, (name, best seconds, tokens), each timed by `run`."""

  def __init__(self, texts: list[str]):
    self.texts = texts
    self.rows: list[tuple[str, float, int]] = []

  def run(self, name: str, fn: Callable[[], list[list[int]]], times: int) -> list[list[int]]:
    seconds, ids = best_time(fn, times)
    self.rows.append((name, seconds, sum(map(len, ids))))
    return ids

  def reference(self, hf) -> tuple[list[list[int]], list[list[int]]]:
    """transformers' slow tokenizer `hf`, per text and on the batch: the reference ids."""
    texts = self.texts

    def per_text() -> list[list[int]]:
      return [hf.encode(t, add_special_tokens=False) for t in texts]

    return (
      self.run("transformers slow: encode per text", per_text, 1),
      self.run("transformers slow: __call__(batch)", lambda: hf(texts)["input_ids"], 1),
    )

  def report(self, title: str, ours: tuple, reference: tuple) -> None:
    """Print how many rows of `ours` (ids per text, ids of __call__) differ from `reference`,
    then the table."""
    mismatches = sum(a != b for o, r in zip(ours, reference) for a, b in zip(o, r))
    print(f"{title}: {mismatches} mismatching rows of {2 * len(self.texts)}")
    print_rows(self.rows, len(self.texts))


def bench_wordpiece(texts: list[str], vocab_file: str, repeat: int, label: str) -> None:
  """WordPieceTokenizer against transformers' BertTokenizer (slow: the reference) and
  BertTokenizerFast, with a parity count."""
  import transformers

  ours, hf = WordPieceTokenizer(vocab_file), transformers.BertTokenizer(vocab_file)
  fast = transformers.BertTokenizerFast(vocab_file)
  timings = Timings(texts)
  rows, run = timings.rows, timings.run
  ref, ref_call = timings.reference(hf)
  got = run("ours: encode_as_ids(batch)", lambda: ours.encode_as_ids(texts), repeat)
  got_call = run("ours: __call__(batch)", lambda: ours(texts)["input_ids"], repeat)
  seconds, enc = best_time(
    lambda: ours(texts, max_length=512, truncation=True, padding="max_length", return_tensors="np"),
    repeat,
  )
  rows.append(("ours: __call__(batch, pad to 512, np)", seconds, int(enc["attention_mask"].sum())))
  run("transformers fast (Rust): __call__(batch)", lambda: fast(texts)["input_ids"], repeat)
  title = f"\nWordPiece, {label}: parity with transformers' slow BertTokenizer"
  timings.report(title, (got, got_call), (ref, ref_call))


def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
  best, result = float("inf"), None
  for _ in range(repeat):
    t0 = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - t0)
  return best, result


def main() -> None:
  ap = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  ap.add_argument("--paragraphs", type=int, default=4000)
  ap.add_argument("--vocab-size", type=int, default=8000)
  ap.add_argument("--model", help="an existing spiece.model (default: train one on the text)")
  ap.add_argument("--repeat", type=int, default=3)
  args = ap.parse_args()

  texts = stdlib_paragraphs(args.paragraphs)
  chars = sum(map(len, texts))
  print(
    f"text: {len(texts)} stdlib docstring paragraphs, {chars / len(texts):.0f} chars on average; "
    f"python {sys.version.split()[0]}, {os.cpu_count()} cores"
  )
  with tempfile.TemporaryDirectory() as tmp:
    model = args.model
    if model is None:
      corpus = os.path.join(tmp, "corpus.txt")
      with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
      t0 = time.perf_counter()
      model = train_tokenizer(
        corpus, args.vocab_size, os.path.join(tmp, "spiece"), hard_vocab_limit=False
      )
      print(f"train_tokenizer: {time.perf_counter() - t0:.1f} s for {args.vocab_size} pieces")

    import transformers

    transformers.logging.set_verbosity_error()
    ours = AlbertTokenizer(model)
    ours_1 = AlbertTokenizer(model, num_threads=1)
    hf = transformers.AlbertTokenizer(model)

    timings = Timings(texts)
    rows, run = timings.rows, timings.run
    ref, ref_call = timings.reference(hf)
    got = run(
      "ours: encode_as_ids(batch), all cores", lambda: ours.encode_as_ids(texts), args.repeat
    )
    run("ours: encode_as_ids(batch), 1 thread", lambda: ours_1.encode_as_ids(texts), args.repeat)
    got_call = run("ours: __call__(batch)", lambda: ours(texts)["input_ids"], args.repeat)
    seconds, enc = best_time(
      lambda: ours(
        texts, max_length=512, truncation=True, padding="max_length", return_tensors="np"
      ),
      args.repeat,
    )
    real_tokens = int(enc["attention_mask"].sum())  # padding is not counted
    rows.append(("ours: __call__(batch, pad to 512, np)", seconds, real_tokens))
    try:  # orientation only: the converted fast tokenizer is not exactly the slow one
      fast = transformers.AlbertTokenizerFast(vocab_file=model)
      run(
        "transformers fast (Rust): __call__(batch)", lambda: fast(texts)["input_ids"], args.repeat
      )
    except Exception as e:  # noqa: BLE001 - conversion needs protobuf/tokenizers
      print(f"(transformers fast tokenizer unavailable: {type(e).__name__}: {e})")

    title = "SentencePiece: parity with transformers slow"
    timings.report(title, (got, got_call), (ref, ref_call))

    chinese = chinese_lines(len(texts))
    corpus = os.path.join(tmp, "wordpiece_corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
      f.write("\n".join(texts + chinese) + "\n")
    t0 = time.perf_counter()
    vocab = train_wordpiece_vocab(corpus, args.vocab_size, os.path.join(tmp, "vocab.txt"))
    print(f"\ntrain_wordpiece_vocab: {time.perf_counter() - t0:.1f} s for {args.vocab_size} tokens")
    bench_wordpiece(texts, vocab, args.repeat, "English paragraphs")
    bench_wordpiece(chinese, vocab, args.repeat, f"{len(chinese)} synthetic Chinese lines")


if __name__ == "__main__":
  main()
