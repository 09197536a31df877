"""The fine-tuning program: GLUE, SQuAD v1.1/v2.0, RACE and CoNLL-style NER on albert_flax.

    python -m finetune --config=finetune/configs/glue.py --workdir=/tmp/rte \
        --config.init_from=albert-base-v2/ --config.task=rte

From Python (a notebook): `finetune.train.train_and_evaluate(config, workdir)` with a config from
`finetune.configs.<task>.get_config()`.
"""
