"""python -m albert_flax.export --model=DIR|WORKDIR --format=onnx --out=DIR [options]

Loads a saved model, a transformers directory or a pretraining / fine-tuning workdir (whatever
`af.from_pretrained` reads), with its tokenizer, and writes the artifact (`af.export`).

    --head=AlbertForSequenceClassification   the model class (default: the saved one)
    --num_labels=N                           the classifier's width, when the head is new
    --max_seq_length=N                       the longest input (default max_position_embeddings)
    --int8                                   int8 weights (af.quantize) in the artifact
"""

from __future__ import annotations

import argparse
import os
import sys

import albert_flax as af
from albert_flax import workdir
from albert_flax.export import FORMATS, MissingExtraError, export
from albert_flax.export.serving import OUTPUT_NAMES
from albert_flax.tokenization.loading import load_tokenizer


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m albert_flax.export", description=__doc__.split("\n")[2]
  )
  p.add_argument("--model", required=True, help="saved model, transformers dir or workdir")
  p.add_argument("--format", required=True, choices=FORMATS)
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--head", choices=sorted(OUTPUT_NAMES), default=None, help="model class")
  p.add_argument("--num_labels", type=int, default=None)
  p.add_argument("--max_seq_length", type=int, default=None)
  p.add_argument("--int8", action="store_true", help="int8 weights (af.quantize)")
  return p


def _tokenizer(path: str):
  """The checkpoint's tokenizer (a fine-tuning workdir keeps it in model/), or None."""
  for candidate in (path, os.path.join(path, workdir.MODEL_DIR)):
    try:
      return load_tokenizer(candidate)
    except (OSError, ValueError):
      continue
  return None


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  if not os.path.exists(args.model):
    print(f"error: --model {args.model}: no such file or directory", file=sys.stderr)
    return 2
  head = {} if args.num_labels is None else {"num_labels": args.num_labels}
  try:
    model, params = af.from_pretrained(args.model, args.head, **head)
    if args.int8:
      model, params = af.quantize(model, params)
    path = export(
      model,
      params,
      args.out,
      format=args.format,
      max_seq_length=args.max_seq_length,
      tokenizer=_tokenizer(args.model),
    )
  except (MissingExtraError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
