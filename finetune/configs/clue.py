r"""CLUE classification fine-tuning (Chinese; a WordPiece checkpoint such as albert_base_zh).

    python -m finetune --config=finetune/configs/clue.py --workdir=/tmp/afqmc \
        --config.init_from=albert_base_zh/ --config.task=afqmc --config.data_dir=afqmc_public/

task: afqmc | tnews | iflytek | cmnli | ocnli | csl | wsc (CLUEWSC2020). data_dir is the task's
folder as CLUE distributes it (train.json, dev.json, test.json); test predictions are written as
<task>_predict.json for CLUE's leaderboard.
"""

from finetune.configs.common import base_config, task_row


def _row(train_examples: int):
  # CLUE's ALBERT baselines (CLUEbenchmark/CLUE baselines/models/albert/run_classifier_<task>.sh):
  # max_seq_length 128, batch 16, lr 3e-5, 2 epochs, warm-up 10% (run_classifier's default);
  # steps = 2 epochs of the training set (sizes from the CLUE paper, table 1).
  steps = 2 * train_examples // 16
  return task_row(3e-5, 16, steps, steps // 10, 0.0, 128)


PER_TASK = {
  "afqmc": _row(34334),
  "tnews": _row(53360),
  "iflytek": _row(12133),
  "cmnli": _row(391783),
  "ocnli": _row(50437),
  "csl": _row(20000),
  "wsc": _row(1244),
}
PER_TASK["cluewsc2020"] = PER_TASK["wsc"]


def get_config():
  c = base_config()
  c.family = "clue"
  c.task = "afqmc"  # afqmc | tnews | iflytek | cmnli | ocnli | csl | wsc
  c.per_task_key = "task"
  c.per_task = PER_TASK
  return c
