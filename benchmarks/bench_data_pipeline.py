"""Throughput and memory of the pretraining data pipeline (pretrain.data.make_pretraining_batches).

    PYTHONPATH=. python benchmarks/bench_data_pipeline.py [--workdir /tmp/bench_data] [--quick]
        [--baseline REV] [--rounds N] [--seqs 128 512] [--workers 0 2] [--no_rss]

Two implementations side by side: this tree's (`new`, grain) and the `pretrain` package of git
revision `--baseline` (`old`; default: the hand-written pool before grain), extracted with
`git archive`. Every throughput figure is measured in its own subprocess, old and new
alternating (`--rounds` times each), so the machine's drift falls on both.

Corpus: the built-in corpus (Python standard library docstrings, ~0.4M tokens), its documents
grouped by 4 into Wikipedia-sized articles (~1k tokens); the "4x" corpus is four such copies with
different groupings (new documents, same text statistics). Tokenizer: a SentencePiece unigram
model of 8k pieces trained on it (the pipeline's cost barely depends on the vocabulary size).

Prints, for max_seq_length 128 and 512 (P = 20) and num_workers 0 and 2: examples/s (wall clock,
median of the rounds) and examples per CPU-second (main process and workers: the figure that
holds when the machine is shared), old and new and their ratio, and that CPU split between the
main process and the workers, and the time to the first batch (worker start-up); where the CPU
time goes for one window (tokenize / pairs + packing / masking). Each timed stretch is a whole
number of windows' worth of examples (8 with --quick, else 24) after a warm-up in which every
worker makes two windows. Then the peak RSS of a process that reads one full
epoch of the small and of the 4x corpus with windows of 128 documents (it should not grow with
the corpus), for both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# Appended: a PYTHONPATH naming another `pretrain` (the baseline's, in child processes) comes first.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pretrain import builtin_corpus, corpus, data  # noqa: E402
from pretrain.examples import ExampleConfig, make_examples, tokenize_documents  # noqa: E402


def build_corpora(workdir: str) -> tuple[str, str, str]:
  """(small corpus, 4x corpus, spm model), written once into workdir."""
  os.makedirs(workdir, exist_ok=True)
  small, large = os.path.join(workdir, "small.txt"), os.path.join(workdir, "large.txt")
  src = builtin_corpus.builtin_source()
  docs = [d for d, _ in src.documents(0, None, 0, 1)]
  if not os.path.exists(large):
    for path, copies in ((small, 1), (large, 4)):
      with open(path, "w", encoding="utf-8") as f:
        for c in range(copies):
          shifted = docs[c:] + docs[:c]  # a different grouping in every copy
          for i in range(0, len(shifted), 4):
            f.write("\n".join(s for d in shifted[i : i + 4] for s in d) + "\n\n")
  model = os.path.join(workdir, "spm8k.model")
  if not os.path.exists(model):
    from albert_flax.tokenization import train_tokenizer

    train_tokenizer(small, 8000, model[: -len(".model")], seed=0, hard_vocab_limit=False)
  return small, large, model


BASELINE = "ca8fa6d"  # The last revision with the hand-written worker pool (before grain).
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _descendants(pid: int) -> list[int]:
  out = []
  try:
    tasks = os.listdir(f"/proc/{pid}/task")
  except OSError:
    return out
  for tid in tasks:
    try:
      with open(f"/proc/{pid}/task/{tid}/children") as f:
        kids = [int(k) for k in f.read().split()]
    except OSError:
      continue
    for kid in kids:
      out += [kid, *_descendants(kid)]
  return out


def _cpu() -> tuple[float, float]:
  """CPU seconds of this process and of its live descendants (worker processes)."""
  s = resource.getrusage(resource.RUSAGE_SELF)
  tick = os.sysconf("SC_CLK_TCK")
  workers = 0.0
  for pid in _descendants(os.getpid()):
    try:
      with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    workers += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
  return s.ru_utime + s.ru_stime, workers


def throughput(
  files: str, model: str, seq: int, workers: int, warmup: int, min_examples: int
) -> dict:
  """Steady state over windows of 256 documents (~300k tokens each): `warmup` examples first
  (worker start-up and the first windows, which every worker makes at once), then `min_examples`
  timed. Runs the `pretrain` first on sys.path."""
  from albert_flax.tokenization import AlbertTokenizer

  tok = AlbertTokenizer(model)
  t_start = time.perf_counter()
  it = data.make_pretraining_batches(
    files,
    tok,
    64,
    seq,
    20,
    0,
    process_index=0,
    process_count=1,
    num_workers=workers,
    shuffle_buffer=256,
  )
  with it:
    n = len(next(it)["input_ids"])
    first_batch_s = time.perf_counter() - t_start
    while n < warmup:
      n += len(next(it)["input_ids"])
    n, t0, (main0, workers0) = 0, time.perf_counter(), _cpu()
    while n < min_examples:
      n += len(next(it)["input_ids"])
    wall, (main1, workers1) = time.perf_counter() - t0, _cpu()
    main, worker = main1 - main0, workers1 - workers0
    result = {
      "examples": n,
      "examples_per_s": n / wall,
      "examples_per_cpu_s": n / (main + worker),
      "main_cpu_ms_per_1k": 1e6 * main / n,
      "workers_cpu_ms_per_1k": 1e6 * worker / n,
      "first_batch_s": first_batch_s,
    }
    print(json.dumps(result), flush=True)  # Before closing the workers (see `_child`).
  return result


def breakdown(files: str, model: str, seq: int) -> dict:
  """CPU seconds per 1000 examples of each stage, on one window of (up to) 1024 documents."""
  from albert_flax.tokenization import AlbertTokenizer

  tok = AlbertTokenizer(model, num_threads=1)
  docs = [
    d for _, (d, _) in zip(range(1024), corpus.TextFileSource(files).documents(0, None, 0, 1))
  ]
  cfg = ExampleConfig(seq, 20)
  t0 = time.process_time()
  t = tokenize_documents(docs, tok)
  t1 = time.process_time()
  ex = make_examples(t, cfg, tok, (0,), mask=False)
  t2 = time.process_time()
  make_examples(t, cfg, tok, (0,), mask=True)
  t3 = time.process_time()
  k = 1000 / len(ex["length"])
  return {
    "documents": len(docs),
    "examples": len(ex["length"]),
    "tokens": len(t.tokens),
    "tokenize_s_per_1k": (t1 - t0) * k,
    "pairs_pack_s_per_1k": (t2 - t1) * k,
    "masking_s_per_1k": (t3 - t2 - (t2 - t1)) * k,
  }


def _peak_rss_child(files: str, model: str, seq: int) -> None:
  from albert_flax.tokenization import AlbertTokenizer

  tok = AlbertTokenizer(model)
  n = 0
  # Windows of 128 documents: fewer than either corpus has, so a flat figure means what it says.
  for b in data.make_pretraining_batches(
    files, tok, 64, seq, 20, 0, process_index=0, process_count=1, num_epochs=1, shuffle_buffer=128
  ):
    n += len(b["input_ids"])
  print(
    json.dumps(
      {"examples": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    )
  )


def _child(root: str, *args: str) -> dict:
  """Runs this script with `args` in a subprocess whose `pretrain` package is the one in `root`;
  returns the JSON line it prints."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.path.abspath(REPO)]))
  with tempfile.TemporaryFile("w+") as err:
    proc = subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), *args],
      stdout=subprocess.PIPE,
      stderr=err,
      text=True,
      env=env,
      cwd=root,
      start_new_session=True,  # Its own process group: killed with its workers if it hangs.
    )
    result = None
    for line in proc.stdout:
      if line.startswith("{"):
        result = json.loads(line)
        break
    try:
      # The result is printed before the iterator closes: the old pool's `terminate` can hang
      # (its task thread blocked on a full pipe), which must not stop the benchmark.
      proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, 9)
      proc.wait()
    if result is None:
      err.seek(0)
      raise RuntimeError(f"benchmark child {args} failed:\n{err.read()[-3000:]}")
  return result


def extract_baseline(rev: str, into: str) -> str:
  """The `pretrain` package of git revision `rev`, written under `into`; returns that root."""
  archive = subprocess.run(
    ["git", "-C", REPO, "archive", rev, "pretrain"], check=True, capture_output=True
  ).stdout
  subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
  return into


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", default="/tmp/bench_data_pipeline")
  p.add_argument("--quick", action="store_true", help="fewer examples per measurement")
  p.add_argument("--baseline", default=BASELINE, help="git revision of the `old` pipeline")
  p.add_argument("--rounds", type=int, default=3, help="measurements of each side, alternating")
  p.add_argument("--seqs", type=int, nargs="+", default=[128, 512], help="max_seq_lengths")
  p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="num_workers values")
  p.add_argument("--no_rss", action="store_true", help="skip the peak-RSS measurement")
  p.add_argument("--_rss_child", nargs=3, help=argparse.SUPPRESS)
  p.add_argument("--_throughput_child", nargs=6, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args._rss_child:
    _peak_rss_child(args._rss_child[0], args._rss_child[1], int(args._rss_child[2]))
    return
  if args._throughput_child:
    files, model, seq, workers, warmup, need = args._throughput_child
    throughput(files, model, int(seq), int(workers), int(warmup), int(need))
    return
  small, large, model = build_corpora(args.workdir)
  from benchmarks.common import cpu_model

  print(
    f"corpus: small {os.path.getsize(small) / 2**20:.1f} MiB, "
    f"4x {os.path.getsize(large) / 2**20:.1f} MiB; {os.cpu_count()} CPUs ({cpu_model()}), "
    f"load average {os.getloadavg()[0]:.1f}"
  )
  per_window = {}
  for seq in args.seqs:
    b = breakdown(small, model, seq)
    # The throughput runs' windows hold 256 documents (of the 4x corpus: the same documents).
    per_window[seq] = b["examples"] / b["documents"] * 256
    print(
      f"S={seq}: one window of {b['documents']} docs -> {b['examples']} examples "
      f"({b['tokens']} tokens); "
      f"per 1000 examples: tokenize {b['tokenize_s_per_1k']:.3f}s, pairs+pack "
      f"{b['pairs_pack_s_per_1k']:.3f}s, masking {b['masking_s_per_1k']:.3f}s (CPU, 1 thread)"
    )
  with tempfile.TemporaryDirectory() as tmp:
    roots = {"old": extract_baseline(args.baseline, tmp), "new": os.path.abspath(REPO)}
    for seq in args.seqs:
      # Measured over whole windows' worth of examples, after every worker made two windows:
      # a timed stretch of a few windows right after start-up measures how the first windows
      # happen to fall between the workers, not the throughput.
      need = int((8 if args.quick else 24) * per_window[seq])
      for workers in args.workers:
        _compare_throughput(args, roots, large, model, seq, workers, per_window[seq], need)
    for side in () if args.no_rss else ("old", "new"):
      for name, path in (("small", small), ("4x", large)):
        r = _child(roots[side], "--_rss_child", path, model, "512")
        print(
          f"{side}: peak RSS, one epoch of the {name} corpus at S=512: "
          f"{r['peak_rss_mib']:.0f} MiB ({r['examples']} examples)"
        )


def _compare_throughput(args, roots, large, model, seq, workers, per_window, need) -> None:
  """The old and the new pipeline's throughput on the 4x corpus, `args.rounds` rounds each in
  alternating order, each in a child process; their medians printed."""
  warmup = int((2 * max(workers, 1) + 2) * per_window)
  runs: dict[str, list[dict]] = {"old": [], "new": []}
  for r in range(args.rounds):
    for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
      child_args = (
        "--_throughput_child",
        *(large, model, str(seq), str(workers), str(warmup), str(need)),
      )
      runs[side].append(_child(roots[side], *child_args))
  med = {
    side: {
      k: statistics.median(x[k] for x in rs)
      for k in (
        "examples_per_s",
        "examples_per_cpu_s",
        "main_cpu_ms_per_1k",
        "workers_cpu_ms_per_1k",
        "first_batch_s",
      )
    }
    for side, rs in runs.items()
  }
  print(
    f"S={seq} num_workers={workers}: examples/s wall old {med['old']['examples_per_s']:.0f}"
    f" new {med['new']['examples_per_s']:.0f} (new/old "
    f"{med['new']['examples_per_s'] / med['old']['examples_per_s']:.2f}); per CPU-second "
    f"old {med['old']['examples_per_cpu_s']:.0f} new {med['new']['examples_per_cpu_s']:.0f}"
    f" (new/old {med['new']['examples_per_cpu_s'] / med['old']['examples_per_cpu_s']:.2f});"
    f" {args.rounds} rounds, walls old "
    f"{[round(x['examples_per_s']) for x in runs['old']]} new "
    f"{[round(x['examples_per_s']) for x in runs['new']]}"
  )
  print(
    "  CPU ms per 1000 examples, main process + workers: "
    + ", ".join(
      f"{side} {m['main_cpu_ms_per_1k']:.0f} + {m['workers_cpu_ms_per_1k']:.0f}"
      for side, m in med.items()
    )
    + "; first batch after "
    + ", ".join(f"{side} {m['first_batch_s']:.1f}s" for side, m in med.items())
    + f"; load average {os.getloadavg()[0]:.1f}"
  )


if __name__ == "__main__":
  main()
