"""ALBERT-xxlarge (L12 H4096 A64 I16384 E128, 222.6M parameters), the paper's recipe
(`common.pod_config`), with no dropout (as the released xxlarge).

remat "full"; parameters and LAMB moments split over fsdp=8, and the FFN/attention width over
tensor=2 (a tensor axis inside each host). On a v4-512 the TPU compiler plans 5.6 GiB per chip
(`--compile_only --topology=v4-512`, benchmarks/RESULTS.md). On every host of a v4-512 slice
(creating it: docs/tpu.md):

    python -m pretrain --jax_distributed --config=pretrain/configs/xxlarge.py \
        --workdir=/mnt/shared/runs/albert-xxlarge \
        --config.data.train_files='/mnt/shared/corpus/*.txt'

A smaller slice: keep batch_size 4096 and raise grad_accum_steps (the result equals the big batch).
"""

from pretrain.configs import common


def get_config():
  return common.pod_config("xxlarge-v2", fsdp=8, tensor=2)
