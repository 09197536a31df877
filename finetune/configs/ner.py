r"""Named-entity recognition (CoNLL-2003 format) fine-tuning.

    python -m finetune --config=finetune/configs/ner.py --workdir=/tmp/ner \
        --config.init_from=albert-base-v2/ [--config.data_dir=conll2003/]

data_dir holds train.txt, valid.txt, test.txt (or eng.train, eng.testa, eng.testb); without it,
tensorflow-datasets conll2003.
"""

from finetune.configs.common import base_config, task_row

# ALBERT's paper and code have no NER run. These follow transformers' token-classification
# example (run_ner: lr 5e-5, 3 epochs) with ALBERT's fine-tuning conventions: batch 32, so 3
# epochs of CoNLL-2003's 14,041 training sentences are ~1,320 steps, 10% warm-up (as the
# original run_squad), sequence 128, ALBERT dropout 0, classifier dropout 0.1.
#                              LR    BSZ  TS    WS   ALBERT DR  MSL
PER_TASK = {"conll2003": task_row(5e-5, 32, 1320, 132, 0.0, 128)}


def get_config():
  c = base_config()
  c.family = "ner"
  c.name = "conll2003"  # the row of per_task (one: conll2003)
  c.entity_types = "PER,ORG,LOC,MISC"  # the entity types of the data (labels B-/I-TYPE and O)
  c.train_file = ""  # default: train.txt or eng.train in data_dir
  c.dev_file = ""  # default: valid.txt, dev.txt or eng.testa
  c.test_file = ""  # default: test.txt or eng.testb (optional)
  c.per_task_key = "name"
  c.per_task = PER_TASK
  return c
