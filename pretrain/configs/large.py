"""ALBERT-large (v2: L24 H1024 E128, 17.7M parameters), the paper's recipe (`common.pod_config`).

remat "full": 5.4 GiB per chip on a v4-128 by the TPU compiler (`--compile_only
--topology=v4-128`, benchmarks/RESULTS.md); base without remat does not fit a v4-64. On every
host of a v4-128 slice (creating it: docs/tpu.md):

    python -m pretrain --jax_distributed --config=pretrain/configs/large.py \
        --workdir=/mnt/shared/runs/albert-large \
        --config.data.train_files='/mnt/shared/corpus/*.txt'
"""

from pretrain.configs import common


def get_config():
  return common.pod_config("large-v2")
