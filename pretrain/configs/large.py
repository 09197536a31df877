"""ALBERT-large (v2 sizes: L24 H1024 E128, 17.7M parameters) with the paper's recipe.

Batch 4096 x 512, 20 predictions, LAMB lr 0.00176, 3125 warm-up, 125k steps, bf16 compute.
remat "full": 5.4 GiB per chip on a v4-128 by the TPU compiler (`--compile_only
--topology=v4-128`, benchmarks/RESULTS.md); base without remat does not fit a v4-64.

    gcloud compute tpus tpu-vm create albert --zone=us-central2-b --accelerator-type=v4-128 \
        --version=tpu-ubuntu2204-base
    gcloud compute tpus tpu-vm ssh albert --zone=us-central2-b --worker=all --command="
        cd albert-flax && pip install -e '.[tpu]' &&
        python -m pretrain --jax_distributed --config=pretrain/configs/large.py \
            --workdir=/mnt/shared/runs/albert-large \
            --config.data.train_files='/mnt/shared/corpus/*.txt'"
"""

from pretrain.configs import common


def get_config():
  c = common.get_config()
  c.model = "large-v2"
  c.remat = "full"  # fits a v4-128 at batch 4096 x 512 (see the docstring)
  return c
