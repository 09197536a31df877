"""ALBERT-base (v2: L12 H768 E128, 11.7M parameters), the paper's recipe (`common.pod_config`).

remat "full": without it the step needs 32.0 GiB of temporaries per chip on a v4-64 (the compiler
has 30.75 GiB: it does not fit); with it 5.6 GiB (the TPU compiler's figures: `python -m pretrain
--config=pretrain/configs/base.py --compile_only --topology=v4-64`, benchmarks/RESULTS.md;
"dots_with_no_batch_dims" fits too). On every host of a v4-64 slice (workdir and data on a
filesystem every host sees; creating the slice: docs/tpu.md, pretrain/README.md):

    python -m pretrain --jax_distributed --config=pretrain/configs/base.py \
        --workdir=/mnt/shared/runs/albert-base \
        --config.data.train_files='/mnt/shared/corpus/*.txt'

On a laptop, the same config cut down: `--config.batch_size=8 --config.max_seq_length=128`.
"""

from pretrain.configs import common


def get_config():
  return common.pod_config("base-v2")
