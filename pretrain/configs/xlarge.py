"""ALBERT-xlarge (v2 sizes: L24 H2048 E128, 58.7M parameters) with the paper's recipe.

Batch 4096 x 512, 20 predictions, LAMB lr 0.00176, 3125 warm-up, 125k steps, bf16 compute.
The shared layer is recomputed in the backward pass (remat "full") to fit 24 layers of
activations; parameters and LAMB moments are split over an fsdp axis of 4 within each data replica.
On a v4-256 (mesh data 32 x fsdp 4) the TPU compiler plans 5.3 GiB per chip (`--compile_only
--topology=v4-256`, benchmarks/RESULTS.md).

    gcloud compute tpus tpu-vm create albert --zone=us-central2-b --accelerator-type=v4-256 \
        --version=tpu-ubuntu2204-base
    gcloud compute tpus tpu-vm ssh albert --zone=us-central2-b --worker=all --command="
        cd albert-flax && pip install -e '.[tpu]' &&
        python -m pretrain --jax_distributed --config=pretrain/configs/xlarge.py \
            --workdir=/mnt/shared/runs/albert-xlarge \
            --config.data.train_files='/mnt/shared/corpus/*.txt'"
"""

from pretrain.configs import common


def get_config():
  c = common.get_config()
  c.model = "xlarge-v2"
  c.remat = "full"
  c.mesh.data = -1
  c.mesh.fsdp = 4
  return c
