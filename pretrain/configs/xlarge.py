"""ALBERT-xlarge (v2: L24 H2048 E128, 58.7M parameters), the paper's recipe (`common.pod_config`).

remat "full" to fit 24 layers of activations; parameters and LAMB moments split over an fsdp
axis of 4 within each data replica. On a v4-256 (mesh data 32 x fsdp 4) the TPU compiler plans
5.3 GiB per chip (`--compile_only --topology=v4-256`, benchmarks/RESULTS.md). On every host of a
v4-256 slice (creating it: docs/tpu.md):

    python -m pretrain --jax_distributed --config=pretrain/configs/xlarge.py \
        --workdir=/mnt/shared/runs/albert-xlarge \
        --config.data.train_files='/mnt/shared/corpus/*.txt'
"""

from pretrain.configs import common


def get_config():
  return common.pod_config("xlarge-v2", fsdp=4)
