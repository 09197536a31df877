"""The training machinery both programs (pretrain/, finetune/) share, apart from the model library.

    training.py        train state, sharded init, the jitted train and eval steps
    optim.py           LAMB (as the original) and AdamW, with warm-up + polynomial decay
    losses.py          pretraining and task-head losses as (sum, weight) pairs
    checkpoints.py     resumable orbax checkpoints of the train state and the data position
    metric_writers.py  metrics.jsonl, TensorBoard, the progress bar

The model library (`albert_flax`) imports nothing from here: a program that only runs the model
needs neither tensorboardX nor tqdm.
"""
