"""The ALBERT pretraining program: data pipeline (sentence-order pairs + n-gram masking), training.

`pretrain.data.make_pretraining_batches` is the input pipeline (grain datasets, see
`pretrain/pipeline.py`); `python -m pretrain.create_data` writes statically masked shards.
"""
