"""ALBERT-xxlarge (L12 H4096 A64 I16384 E128, 222.6M parameters) with the paper's recipe.

Batch 4096 x 512, 20 predictions, LAMB lr 0.00176, 3125 warm-up, 125k steps, bf16 compute, no
dropout (as the released xxlarge). remat "full"; parameters and LAMB moments split over
fsdp=8, and the FFN/attention width over tensor=2 (a tensor axis inside each host). On a v4-512
the TPU compiler plans 5.6 GiB per chip (`--compile_only --topology=v4-512`, benchmarks/RESULTS.md).

    gcloud compute tpus tpu-vm create albert --zone=us-central2-b --accelerator-type=v4-512 \
        --version=tpu-ubuntu2204-base
    gcloud compute tpus tpu-vm ssh albert --zone=us-central2-b --worker=all --command="
        cd albert-flax && pip install -e '.[tpu]' &&
        python -m pretrain --jax_distributed --config=pretrain/configs/xxlarge.py \
            --workdir=/mnt/shared/runs/albert-xxlarge \
            --config.data.train_files='/mnt/shared/corpus/*.txt'"

A smaller slice: keep batch_size 4096 and raise grad_accum_steps (the result equals the big batch).
"""

from pretrain.configs import common


def get_config():
  c = common.get_config()
  c.model = "xxlarge-v2"
  c.remat = "full"
  c.mesh.data = -1
  c.mesh.fsdp = 8
  c.mesh.tensor = 2
  return c
