r"""CMRC 2018 fine-tuning (Chinese span extraction; a WordPiece checkpoint such as albert_base_zh).

    python -m finetune --config=finetune/configs/cmrc.py --workdir=/tmp/cmrc \
        --config.init_from=albert_base_zh/ --config.data_dir=cmrc2018_public/

data_dir holds train.json and dev.json (CLUE's names) or cmrc2018_train.json and
cmrc2018_dev.json. Scores: CMRC's official F1, EM and their average (finetune/cmrc_metric.py).
"""

from finetune.configs import squad
from finetune.configs.common import base_config, task_row

# CLUE's CMRC 2018 baseline (baselines/models_pytorch/mrc_pytorch/run_mrc_cmrc2018.sh): 2 epochs,
# batch 32, lr 3e-5, warm-up 10%, max_seq_length 512; 2 epochs of its 10,142 training questions.
#                             LR    BSZ  TS   WS  ALBERT DR  MSL
PER_TASK = {"cmrc2018": task_row(3e-5, 32, 634, 63, 0.0, 512)}


def get_config():
  c = base_config()
  c.family = "cmrc"
  c.task = "cmrc2018"  # the row of per_task (one: cmrc2018)
  c.update(squad.WINDOWS)
  c.per_task_key = "task"
  c.per_task = PER_TASK
  return c
