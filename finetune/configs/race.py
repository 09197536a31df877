r"""RACE fine-tuning (multiple choice).

    python -m finetune --config=finetune/configs/race.py --workdir=/tmp/race \
        --config.init_from=albert-base-v2/ [--config.data_dir=RACE/] [--config.levels=middle,high]

data_dir holds train|dev|test/high|middle/*.txt; without it, tensorflow-datasets race/high and
race/middle.
"""

from finetune.configs.common import base_config, task_row

# google-research/albert README, run_race: --learning_rate=1e-5 --train_batch_size=32
# --train_step=12000 --warmup_step=1000 --max_seq_length=512 --max_qa_length=128. (The paper's
# table 15 lists LR 2e-5 with the same batch, steps and warm-up, ALBERT dropout 0.1.)
#                         LR    BSZ  TS     WS    ALBERT DR  MSL
PER_TASK = {"race": task_row(1e-5, 32, 12000, 1000, 0.1, 512)}


def get_config():
  c = base_config()
  c.family = "race"
  c.name = "race"  # the row of per_task (one: race)
  c.levels = "middle,high"  # middle, high or both (comma-separated)
  c.max_qa_length = 128  # tokens of question and option together, at most
  c.eval_batch_size = 8
  c.per_task_key = "name"
  c.per_task = PER_TASK
  return c
