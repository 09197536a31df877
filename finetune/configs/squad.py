r"""SQuAD v1.1 / v2.0 fine-tuning.

    python -m finetune --config=finetune/configs/squad.py --workdir=/tmp/squad2 \
        --config.init_from=albert-base-v2/ --config.version=2.0 [--config.data_dir=squad/]

data_dir holds train-v{version}.json and dev-v{version}.json; without it, tensorflow-datasets
squad/v1.1 or squad/v2.0.
"""

from ml_collections import config_dict

from finetune.configs.common import base_config, task_row

# Lan et al. (2019), table 15: SQuAD v1.1 LR 5e-5, BSZ 48, 3649 steps, 365 warm-up, MSL 384;
# SQuAD v2.0 LR 3e-5, BSZ 48, 8144 steps, 814 warm-up, MSL 512; ALBERT dropout 0, classifier 0.1.
# (google-research/albert's README runs run_squad_v1/v2 with lr 5e-5, batch 48, 2 epochs,
# warm-up 10%, doc_stride 128, max_query_length 64, n_best_size 20, max_answer_length 30.)
#                  LR    BSZ  TS    WS   ALBERT DR  MSL
PER_TASK = {
  "1_1": task_row(5e-5, 48, 3649, 365, 0.0, 384),
  "2_0": task_row(3e-5, 48, 8144, 814, 0.0, 512),
}


# The sliding windows and answer search of the original run_squad (CMRC 2018 uses them too).
WINDOWS = {"doc_stride": 128, "max_query_length": 64, "n_best_size": 20, "max_answer_length": 30}


def get_config():
  c = base_config()
  c.family = "squad"
  c.version = "1.1"  # "1.1" or "2.0" (unanswerable questions)
  c.doc_stride = WINDOWS["doc_stride"]  # tokens between the starts of a context's windows
  c.max_query_length = WINDOWS["max_query_length"]  # question tokens kept, at most
  c.n_best_size = WINDOWS["n_best_size"]  # start and end candidates scored per window
  c.max_answer_length = WINDOWS["max_answer_length"]  # answer tokens, at most
  # v2.0: answer "" when null score - best span score > this; None: the official best_f1_thresh
  # found on dev.
  c.null_score_diff_threshold = config_dict.placeholder(float)
  c.per_task_key = "version"
  c.per_task = PER_TASK
  return c
