r"""The ALBERT paper's ablations (Tables 3-5) as one command: pretrain every variant, evaluate it,
fine-tune it, tabulate beside the paper.

    python -m pretrain.ablations --table=5 --workdir=runs/ablations --steps=300
    python -m pretrain.ablations --table=all --workdir=runs/ablations \
        --glue_dir=glue_data --squad_dir=squad --race_dir=RACE     # the paper's tasks
    python -m pretrain.ablations --table=4 --config=pretrain/configs/base.py \
        --steps=10000 --batch=4096 --seq=512 --workdir=gs://b/abl --compile_only --topology=v4-128

Every variant (pretrain.ablation_report: Table 3 = E x {not-shared, all-shared}, Table 4 = the
four sharing strategies x two E, Table 5 = sentence loss none / NSP / SOP) pretrains with the same
config, seed and data order (`--config`, default the tiny one; `--steps`, `--batch`, `--seq`,
`--corpus` replace its budget and text) in WORKDIR/variants/<name>/pretrain, on one tokenizer
trained once (WORKDIR/spiece.model). Its held-back evaluation scores MLM, NSP and SOP accuracy
(pretrain.evaluation); then the fine-tuning program (finetune.train.train_and_evaluate) trains it
on each downstream task: GLUE MNLI and SST-2, SQuAD v1.1 and v2.0, RACE when their folders are
given (as the paper), otherwise the two built-in tasks (finetune.builtin_tasks: docstring_kind, a
single-sentence task, and next_sentence, a sentence-pair task), with their dev metrics.

A rerun skips finished variants and fine-tunings (each writes a done.json) and resumes unfinished
ones from their checkpoints. The command prints and writes WORKDIR/ablations.md (for each table
our row and the paper's beneath it: parameters, MLM / NSP / SOP accuracy, each task, average),
WORKDIR/ablations.json, and WORKDIR/mlm_accuracy.png (the variants' MLM accuracy curves).
`--compile_only --topology=...` compiles every variant's pretraining steps for a TPU slice
(albert_flax.train.aot) and runs nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import flags
from etils import epath

from albert_flax import workdir as layout
from albert_flax.config import AlbertConfig
from albert_flax.train import aot, platforms
from finetune import builtin_tasks
from pretrain import ablation_report as report
from pretrain import ablation_runs as runs
from pretrain import steps, train

log = logging.getLogger(__name__)

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "tiny.py")


# =================================================================================== the runs


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a Python config file (as `--config=FILE` of the programs)."""
  if not os.path.isfile(path):
    raise ValueError(f"--config {path!r} is not a file")
  spec = importlib.util.spec_from_file_location("ablation_base_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# =================================================================================== the command


def plan(
  tables: Sequence[str], embedding_sizes: Sequence[int], only: Sequence[str] = ()
) -> dict[str, list]:
  """{table: [(row label, variant, the paper's variant)]} of the requested tables (`only`:
  just these variants)."""
  out = {}
  for t in tables:
    rows = report.table_variants(t, embedding_sizes)
    out[t] = [(label, v, p) for label, v, p in rows if not only or v.name in only]
  names = {v.name for rows in out.values() for _, v, _ in rows}
  unknown = sorted(set(only) - names)
  if unknown or not names:
    known = [v.name for t in tables for _, v, _ in report.table_variants(t, embedding_sizes)]
    raise ValueError(
      f"--variants {unknown or list(only)} not in tables {', '.join(tables)} (their variants: "
      f"{', '.join(dict.fromkeys(known))})"
    )
  return {t: rows for t, rows in out.items() if rows}


def run(
  tables: Sequence[str],
  workdir: str,
  base_config: ml_collections.ConfigDict,
  budget: dict,
  finetuning: dict,
  embedding_sizes: Sequence[int] = report.PAPER_EMBEDDING_SIZES,
  glue_dir: str = "",
  squad_dir: str = "",
  race_dir: str = "",
  only: Sequence[str] = (),
  report_only: bool = False,
  print_fn=print,
) -> dict[str, Any]:
  """Everything the command does but parse flags; returns {"tables": {table: markdown},
  "results": {variant name: our row}}. `report_only`: train nothing, tabulate what is finished
  (the rest shows as not run)."""
  root = epath.Path(workdir)
  root.mkdir(parents=True, exist_ok=True)
  tables_plan = plan(tables, embedding_sizes, only)
  variants = list(dict.fromkeys(v for rows in tables_plan.values() for _, v, _ in rows))
  print_fn(
    f"ablations: tables {', '.join(tables)}: {len(variants)} variants "
    f"({', '.join(v.name for v in variants)})"
  )
  # One tokenizer for every variant (trained once on the training documents).
  if not report_only:
    train.prepare_tokenizer(runs.pretraining_config(base_config, variants[0], budget), root)
  budget = {**budget, "tokenizer.spm_model": str(root / layout.TOKENIZER_FILE)}
  tasks = _downstream(root, finetuning, glue_dir, squad_dir, race_dir, report_only)
  results = {}
  for i, variant in enumerate(variants):
    vdir = root / "variants" / variant.name
    if report_only:
      results[variant.name] = _finished_row(variant, vdir, tasks)
      continue
    progress = f"ablations: [{i + 1}/{len(variants)}] {variant.name}"
    print_fn(f"{progress}: pretraining")
    config = runs.pretraining_config(base_config, variant, budget)
    results[variant.name] = _variant_row(
      variant, config, vdir, tasks, finetuning, progress, print_fn
    )
  return _write_report(root, tables_plan, results, budget, finetuning, tasks, print_fn)


def _downstream(
  root: epath.Path,
  finetuning: dict,
  glue_dir: str,
  squad_dir: str,
  race_dir: str,
  report_only: bool,
) -> list[runs.Downstream]:
  """The fine-tuning tasks; the built-in ones written to root/builtin_tasks when they are used
  and not written yet."""
  builtin_dir = root / "builtin_tasks"
  tasks = runs.downstream_tasks(
    glue_dir, squad_dir, race_dir, str(builtin_dir), finetune=finetuning["steps"] > 0
  )
  if (
    not report_only
    and any(t.column in ("docstring_kind", "next_sentence") for t in tasks)
    and not (builtin_dir / "next_sentence" / "dev.tsv").exists()
  ):
    builtin_tasks.write(str(builtin_dir), seed=finetuning["seed"])
  return tasks


def _variant_row(variant, config, vdir: epath.Path, tasks, finetuning: dict, progress, print_fn):
  """Pretrain the variant (or resume), fine-tune it on every task; its row, kept in
  vdir/result.json."""
  pretrained = runs.run_pretraining(config, vdir / "pretrain")
  finetuned = {}
  for task in tasks:
    print_fn(f"{progress}: fine-tuning {task.column}")
    finetuned[task.column] = runs.run_finetuning(
      task, vdir / "pretrain", vdir / "finetune" / task.column, finetuning
    )
  return _row(variant, vdir, pretrained, finetuned, tasks)


def _finished_row(variant, vdir: epath.Path, tasks) -> dict:
  """--report_only: the row of what the variant finished; "not_run" without its pretraining."""
  if runs.done_results(vdir / "pretrain") is None:
    return {"variant": variant.name, "not_run": True, "mlm_curve": []}
  pretrained = runs.run_pretraining(None, vdir / "pretrain")
  finetuned = {t.column: runs.done_results(vdir / "finetune" / t.column) or {} for t in tasks}
  return _row(variant, vdir, pretrained, finetuned, tasks)


def _row(variant, vdir: epath.Path, pretrained: dict, finetuned: dict, tasks) -> dict:
  model_config = AlbertConfig.from_json_file(str(vdir / "pretrain" / "config.json"))
  row = runs.variant_result(variant, pretrained, finetuned, tasks, runs.count_params(model_config))
  (vdir / "result.json").write_text(json.dumps(row, indent=1))
  return row


def _write_report(root, tables_plan, results, budget, finetuning, tasks, print_fn) -> dict:
  """ablations.md, ablations.json and mlm_accuracy.png in `root`; the tables printed."""
  columns = [t.column for t in tasks]
  markdown, curves = {}, {}
  for table, rows in tables_plan.items():
    markdown[table] = report.format_table(
      table, [(label, p, results[v.name]) for label, v, p in rows], columns
    )
    curves[table] = {label: results[v.name]["mlm_curve"] for label, v, _ in rows}
  text = _document(markdown, budget, finetuning, tasks)
  (root / "ablations.md").write_text(text)
  (root / "ablations.json").write_text(json.dumps(results, indent=1))
  report.plot_mlm_curves(curves, str(root / "mlm_accuracy.png"))
  print_fn(text)
  print_fn(f"ablations: wrote {root / 'ablations.md'} and {root / 'mlm_accuracy.png'}")
  return {"tables": markdown, "results": results}


def _document(markdown: dict[str, str], budget: dict, finetuning: dict, tasks) -> str:
  titles = {
    "3": "Table 3: the embedding size E, not-shared and all-shared",
    "4": "Table 4: cross-layer sharing strategies",
    "5": "Table 5: the inter-sentence loss",
  }
  lines = [
    "# ALBERT ablations",
    "",
    "Pretraining: "
    + ", ".join(f"{k}={v}" for k, v in budget.items() if k != "tokenizer.spm_model")
    + (
      f". Fine-tuning ({', '.join(t.column for t in tasks)}): "
      + ", ".join(f"{k}={v}" for k, v in finetuning.items())
      if tasks
      else ". No fine-tuning"
    )
    + ". MLM / NSP / SOP: held-back accuracy (%); tasks: dev accuracy (%), SQuAD F1/EM. The "
    "paper's rows are ALBERT-base (L=12, H=768) after 125k steps of batch 4096; its Avg is over "
    "SQuAD1.1 F1, SQuAD2.0 F1, MNLI, SST-2 and RACE, ours over our task columns.",
  ]
  for table, text in markdown.items():
    lines += ["", f"## {titles[table]}", "", text]
  return "\n".join(lines) + "\n"


def compile_plan(
  tables, base_config, budget, embedding_sizes, topology: str, num_slices: int, only=(),
  print_fn=print,
) -> int:  # fmt: skip
  """--compile_only: each variant's pretraining steps compiled for the slice; 0 when all fit."""
  planned = plan(tables, embedding_sizes, only)
  variants = list(dict.fromkeys(v for rows in planned.values() for _, v, _ in rows))
  status = 0
  for variant in variants:
    print_fn(f"ablations: {variant.name} on {topology}")
    config = runs.pretraining_config(base_config, variant, budget)
    status |= aot.compile_only(
      config, steps.compile_program, topology, num_slices, print_fn=print_fn
    )
  return status


# ============================================================================= command line

FLAGS = flags.FlagValues()
_TABLE = flags.DEFINE_enum("table", "all", ["3", "4", "5", "all"], "which table", flag_values=FLAGS)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder", required=True, flag_values=FLAGS)
_CONFIG = flags.DEFINE_string(
  "config", DEFAULT_CONFIG, "pretraining config file every variant starts from", flag_values=FLAGS
)
_PRESET = flags.DEFINE_string("preset", None, "model preset (config.model)", flag_values=FLAGS)
_LAYERS = flags.DEFINE_integer("layers", None, "num_hidden_layers", flag_values=FLAGS)
_STEPS = flags.DEFINE_integer("steps", None, "pretraining steps", flag_values=FLAGS)
_BATCH = flags.DEFINE_integer("batch", None, "pretraining batch size", flag_values=FLAGS)
_SEQ = flags.DEFINE_integer("seq", None, "pretraining sequence length", flag_values=FLAGS)
_CORPUS = flags.DEFINE_string(
  "corpus", "builtin", "pretraining text (data.train_files)", flag_values=FLAGS
)
_EVALS = flags.DEFINE_integer(
  "evals", 5, "evaluations per pretraining run (points of the MLM curves)", flag_values=FLAGS
)
_EVAL_STEPS = flags.DEFINE_integer(
  "eval_steps", None, "held-back batches per evaluation and pair kind", flag_values=FLAGS
)
_EMBEDDING_SIZES = flags.DEFINE_list(
  "embedding_sizes", [str(e) for e in report.PAPER_EMBEDDING_SIZES], "Table 3's E values",
  flag_values=FLAGS,
)  # fmt: skip
_VARIANTS = flags.DEFINE_list(
  "variants", [], "run only these variants of the tables (names as all-E128-sop)",
  flag_values=FLAGS,
)  # fmt: skip
_SEED = flags.DEFINE_integer("seed", 0, "pretraining and fine-tuning seed", flag_values=FLAGS)
_FT_STEPS = flags.DEFINE_integer(
  "finetune_steps", 300, "fine-tuning steps (0: no fine-tuning)", flag_values=FLAGS
)
_FT_BATCH = flags.DEFINE_integer("finetune_batch", 32, "fine-tuning batch", flag_values=FLAGS)
_FT_SEQ = flags.DEFINE_integer(
  "finetune_seq", 128, "fine-tuning sequence length", flag_values=FLAGS
)
_FT_EXAMPLES = flags.DEFINE_integer(
  "finetune_examples", 0, "training rows per task (0: all)", flag_values=FLAGS
)
_GLUE_DIR = flags.DEFINE_string("glue_dir", "", "GLUE folder (MNLI/, SST-2/)", flag_values=FLAGS)
_SQUAD_DIR = flags.DEFINE_string(
  "squad_dir", "", "SQuAD folder (train-v1.1.json, dev-v2.0.json, ...)", flag_values=FLAGS
)
_RACE_DIR = flags.DEFINE_string("race_dir", "", "RACE folder", flag_values=FLAGS)
_REPORT_ONLY = flags.DEFINE_bool(
  "report_only", False, "train nothing: tabulate the finished variants", flag_values=FLAGS
)
_COMPILE_ONLY = flags.DEFINE_bool(
  "compile_only", False, "compile every variant's steps for --topology, run nothing",
  flag_values=FLAGS,
)  # fmt: skip
_TOPOLOGY = flags.DEFINE_string("topology", None, "TPU slice for --compile_only", flag_values=FLAGS)
_NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "slices for --compile_only", flag_values=FLAGS)


def _budget() -> dict[str, Any]:
  """Config keys the flags set (the same for every variant)."""
  b: dict[str, Any] = {
    "seed": _SEED.value,
    "data.train_files": _CORPUS.value,
    "progress_bar": False,
  }
  if _PRESET.value:
    b["model"] = _PRESET.value
  if _LAYERS.value:
    b["model_overrides.num_hidden_layers"] = _LAYERS.value
  if _STEPS.value:
    b["num_train_steps"] = _STEPS.value
  if _BATCH.value:
    b["batch_size"] = _BATCH.value
  if _SEQ.value:
    b["max_seq_length"] = _SEQ.value
    b["max_predictions_per_seq"] = max(1, round(0.15 * _SEQ.value))
  if _EVAL_STEPS.value is not None:
    b["eval_steps"] = _EVAL_STEPS.value
  return b


def _with_cadence(base: ml_collections.ConfigDict, budget: dict) -> dict:
  """The budget plus evaluation / checkpoint / log cadence and warm-up fitted to its steps."""
  steps = budget.get("num_train_steps", base.num_train_steps)
  every = max(1, steps // max(1, _EVALS.value))
  return {
    **budget,
    "eval_every_steps": every,
    "checkpoint_every_steps": every,
    "log_every_steps": max(1, min(base.log_every_steps, every)),
    "warmup_steps": min(base.warmup_steps, steps // 10),
  }


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m pretrain.ablations --flag=value ...`; bad flags: one line, exit status 2."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if {"--help", "-h", "--helpfull"} & set(argv):
    print(f"{__doc__}\n{FLAGS.get_help()}")
    return 0
  FLAGS.unparse_flags()
  try:
    rest = FLAGS(["python -m pretrain.ablations", *argv])
    if len(rest) > 1:
      raise flags.Error(f"unexpected arguments {rest[1:]}")
    sizes = [int(e) for e in _EMBEDDING_SIZES.value]
    if not sizes or min(sizes) < 1:
      raise flags.Error(f"--embedding_sizes must be positive ints, got {_EMBEDDING_SIZES.value}")
    if _COMPILE_ONLY.value and not _TOPOLOGY.value:
      raise flags.Error("--compile_only needs --topology (e.g. v4-128 or v4:4x4x8)")
    base = load_config_file(_CONFIG.value)
  except (flags.Error, ValueError) as e:
    print(f"error: {e}\nPass --help for the flags.", file=sys.stderr, flush=True)
    return 2
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
  tables = report.TABLES if _TABLE.value == "all" else (_TABLE.value,)
  budget = _with_cadence(base, _budget())
  # As the programs start: the CPU alone where there is no accelerator, libtpu quiet where it
  # compiles for a TPU slice without one (no screen of libtpu errors either way).
  if _COMPILE_ONLY.value:
    platforms.quiet_libtpu_without_tpu()
  else:
    platforms.use_cpu_without_accelerator()
  try:
    if _COMPILE_ONLY.value:
      return compile_plan(
        tables, base, budget, sizes, _TOPOLOGY.value, _NUM_SLICES.value, _VARIANTS.value
      )
    finetuning = {
      "steps": _FT_STEPS.value,
      "batch": _FT_BATCH.value,
      "seq": _FT_SEQ.value,
      "max_examples": _FT_EXAMPLES.value,
      "seed": _SEED.value,
    }
    run(tables, _WORKDIR.value, base, budget, finetuning, sizes, _GLUE_DIR.value,
        _SQUAD_DIR.value, _RACE_DIR.value, _VARIANTS.value, _REPORT_ONLY.value)  # fmt: skip
  except ValueError as e:  # a config value the programs refuse (ConfigError and the like)
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  except KeyboardInterrupt as e:
    print(f"interrupted: {e}; rerun the same command to resume", file=sys.stderr, flush=True)
    return 75
  return 0


if __name__ == "__main__":
  with contextlib.suppress(BrokenPipeError):
    sys.exit(main())
