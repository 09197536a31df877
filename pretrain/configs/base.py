"""ALBERT-base (v2 sizes: L12 H768 E128, 11.7M parameters) with the paper's recipe.

Batch 4096 x 512 tokens, 20 predictions per sequence, LAMB lr 0.00176, 3125 warm-up steps,
125k steps, bf16 compute with float32 parameters. remat "full": without remat the step needs
32.0 GiB of temporaries per chip on a v4-64 (the compiler has 30.75 GiB: it does not fit); with it
5.6 GiB (the TPU compiler's figures: `python -m pretrain --config=pretrain/configs/base.py
--compile_only --topology=v4-64`, benchmarks/RESULTS.md; "dots_with_no_batch_dims" fits too).
On a TPU pod slice (workdir and data on a filesystem every host sees; see pretrain/README.md):

    gcloud compute tpus tpu-vm create albert --zone=us-central2-b --accelerator-type=v4-64 \
        --version=tpu-ubuntu2204-base
    gcloud compute tpus tpu-vm ssh albert --zone=us-central2-b --worker=all --command="
        cd albert-flax && pip install -e '.[tpu]' &&
        python -m pretrain --jax_distributed --config=pretrain/configs/base.py \
            --workdir=/mnt/shared/runs/albert-base \
            --config.data.train_files='/mnt/shared/corpus/*.txt'"

On a laptop, the same config cut down: `--config.batch_size=8 --config.max_seq_length=128`.
"""

from pretrain.configs import common


def get_config():
  c = common.get_config()
  c.model = "base-v2"
  c.remat = "full"  # see the docstring: remat "none" does not fit a v4-64 at batch 4096 x 512
  return c
