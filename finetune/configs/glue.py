r"""GLUE fine-tuning.

    python -m finetune --config=finetune/configs/glue.py --workdir=/tmp/mnli \
        --config.init_from=albert-base-v2/ --config.task=mnli [--config.data_dir=glue_data/MNLI]

task: cola | sst2 | mrpc | qqp | stsb | mnli | qnli | rte | wnli (MNLI also predicts AX).
Without data_dir the data comes from tensorflow-datasets glue/<task>.
"""

from finetune.configs.common import base_config, task_row


def _row(lr, batch, steps, warmup, dropout):
  return task_row(lr, batch, steps, warmup, dropout, max_seq_length=512)


# Lan et al. (2019), ALBERT, appendix A.4, table 15 ("hyperparameters for ALBERT in downstream
# tasks"), which google-research/albert's run_glue.sh passes to run_classifier.py
# (--warmup_step, --learning_rate, --train_step, --train_batch_size, --max_seq_length=512):
#            LR     BSZ  TS     WS    ALBERT DR  (classifier DR 0.1 for all)
PER_TASK = {
  "cola": _row(1e-5, 16, 5336, 320, 0.0),
  "stsb": _row(2e-5, 16, 3598, 214, 0.0),
  "sst2": _row(1e-5, 32, 20935, 1256, 0.0),
  "mnli": _row(3e-5, 128, 10000, 1000, 0.0),
  "qnli": _row(1e-5, 32, 33112, 1986, 0.0),
  "qqp": _row(5e-5, 128, 14000, 1000, 0.1),
  "rte": _row(3e-5, 32, 800, 200, 0.1),
  "mrpc": _row(2e-5, 32, 800, 200, 0.0),
  "wnli": _row(2e-5, 16, 2000, 250, 0.1),
}


def get_config():
  c = base_config()
  c.family = "glue"
  c.task = "mnli"  # cola | sst2 | mrpc | qqp | stsb | mnli | qnli | rte | wnli
  c.ax_file = ""  # AX diagnostic.tsv; default: data_dir/diagnostic.tsv or ../diagnostic/
  # Rows with missing columns or labels outside the task's set are errors (naming file and
  # line); True drops them with a count in the log instead (QQP's few broken rows).
  c.skip_malformed_rows = False
  c.per_task_key = "task"
  c.per_task = PER_TASK
  return c
