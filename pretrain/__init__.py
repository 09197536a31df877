"""The ALBERT pretraining program: data pipeline (sentence-order pairs + n-gram masking), training.

`pretrain.data.make_pretraining_batches` is the input pipeline; `python -m pretrain.create_data`
writes statically masked shards.
"""
