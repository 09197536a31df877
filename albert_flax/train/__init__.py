"""The training machinery both programs (pretrain/, finetune/) share, apart from the model library.

    training.py        train state, sharded init, the jitted train and eval steps
    optim.py           LAMB (as the original) and AdamW, with warm-up + polynomial decay
    losses.py          pretraining and task-head losses as (sum, weight) pairs
    checkpoints.py     resumable orbax checkpoints of the train state and the data position
    metric_writers.py  metrics.jsonl, TensorBoard, the progress bar
    program.py         the programs' shared entry point: flags, distributed start-up, exit codes
    run_control.py     one run per workdir (lock), run status, config changes on resume
    aot.py             compile-only mode: the exact steps through the TPU compiler, the report
    compiler_output.py what the compiler says: collectives per step, warnings, refusals' figures
    compiled_steps.py  compiled steps saved (--save_compiled) and checked and loaded by a run
    tpu_topologies.py  TPU slices by name (jax's and gcloud's), their devices and HBM

The model library (`albert_flax`) imports nothing from here: a program that only runs the model
needs neither tensorboardX nor tqdm.
"""
