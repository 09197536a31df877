# ---
# jupyter:
#   accelerator: TPU
#   colab:
#     provenance: []
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Pretraining ALBERT on a TPU
#
# Runs `pretrain.train.train_and_evaluate` (the program behind `python -m pretrain`) from a
# notebook: on a Colab TPU runtime (*Runtime > Change runtime type > TPU*), on a single-host
# TPU VM, or on any CPU/GPU machine (there it shrinks itself to a few steps). The data is the
# built-in corpus (docstrings of Python's standard library: no download), the model the
# `tiny` preset; set `MODEL = "base-v2"` and real text for the real thing.
#
# The last section gives the commands that run the same job on every host of a pod slice.

# %%
# Installs albert-flax where it is missing (Colab, a fresh TPU VM); does nothing where it is
# already importable. albert-flax is not on the package index: PIP_SPEC is this checkout (the
# folder above notebooks/) when the notebook runs from one; elsewhere set it to the repository's
# URL ("git+https://...") or the path of a checkout.
import importlib.util
import os
import subprocess
import sys

PIP_SPEC = os.path.abspath("..") if os.path.isfile("../setup.cfg") else ""
if importlib.util.find_spec("albert_flax") is None:
  if not PIP_SPEC:
    raise SystemExit("albert_flax is not installed: set PIP_SPEC to the repository's URL or path")
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", PIP_SPEC, "matplotlib"])

# %% tags=["parameters"]
# Parameters. None: chosen below from the hardware (TPU: a real short run; CPU: a few steps).
WORKDIR = "runs/notebook"  # or a bucket, "gs://BUCKET/notebook": it outlives this VM / runtime
MODEL = "tiny"  # a preset of af.AlbertConfig: tiny, base-v2, large-v2, xlarge-v2, xxlarge-v2
NUM_STEPS = None  # first leg of training
RESUME_STEPS = None  # further steps after resuming from the checkpoint
BATCH_SIZE = None  # global batch: all devices of all hosts together
MAX_SEQ_LENGTH = 128
MESH = {"data": -1, "fsdp": 1, "tensor": 1}  # -1: the devices the other axes leave

# %% [markdown]
# ## Devices
#
# On a TPU VM `jax.devices()` lists the TPU cores of this host (and, on a pod slice after
# `jax.distributed.initialize()`, of every host). Nothing here is TPU-specific: the same
# cells run on CPU.

# %%
import json
import logging
import os

import jax
from etils import epath

import albert_flax as af
from albert_flax import paths, sharding

paths.configure_storage()  # gs:// through gcsfs, no stale listings: what the programs do first
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
for noisy in ("absl", "jax", "orbax", "etils"):
  logging.getLogger(noisy).setLevel(logging.WARNING)

# Compiled programs are cached on disk: a rerun, or the resumed run below, skips compiling.
jax.config.update("jax_compilation_cache_dir", os.path.abspath("jax_cache"))

BACKEND = jax.default_backend()
ON_ACCELERATOR = BACKEND in ("tpu", "gpu")
print(
  f"backend {BACKEND}: {jax.device_count()} devices, {jax.local_device_count()} on this "
  f"host, {jax.process_count()} host(s)"
)
for d in jax.local_devices():
  print("  ", d, getattr(d, "device_kind", ""))

NUM_STEPS = NUM_STEPS or (2000 if ON_ACCELERATOR else 40)
RESUME_STEPS = RESUME_STEPS or (500 if ON_ACCELERATOR else 10)
BATCH_SIZE = BATCH_SIZE or (256 if ON_ACCELERATOR else 16)
print(dict(NUM_STEPS=NUM_STEPS, RESUME_STEPS=RESUME_STEPS, BATCH_SIZE=BATCH_SIZE))

# %% [markdown]
# ## The mesh
#
# Every array lives on a `("data", "fsdp", "tensor")` mesh over all devices: `data` splits
# the batch, `fsdp` splits the batch *and* the parameters and optimizer state, `tensor`
# splits attention heads, FFN width and vocabulary. Parameters carry logical axis names;
# `sharding.LOGICAL_RULES` maps them onto the mesh. Below: how each parameter of the
# model would be laid out (computed from shapes only, nothing is allocated).

# %%
import jax.numpy as jnp

mesh = sharding.make_mesh(**MESH)
print("mesh:", dict(mesh.shape))

model_config = af.AlbertConfig.preset(MODEL)
abstract = jax.eval_shape(
  af.AlbertForPreTraining(model_config).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32)
)["params"]
shardings = sharding.tree_shardings(abstract, mesh)
for path, s in jax.tree_util.tree_flatten_with_path(shardings)[0][:8]:
  print(f"{jax.tree_util.keystr(path):100s} {s.spec}")

# %% [markdown]
# ## Train
#
# The config is the `tiny` one (`pretrain/configs/tiny.py`) with the sizes above; every key is
# documented in `pretrain/configs/common.py`. `train_and_evaluate(config, workdir)` trains a
# tokenizer on the corpus (kept in the workdir), builds the model, shards the state over the
# mesh, and runs the jitted step (MLM + sentence-order losses, LAMB), writing
# `metrics.jsonl`, TensorBoard events and orbax checkpoints (with the data position).

# %%
from pretrain import train
from pretrain.configs import tiny

config = tiny.get_config()
config.model = MODEL
config.dtype = "bfloat16" if BACKEND == "tpu" else "float32"
config.num_train_steps = NUM_STEPS
config.batch_size = BATCH_SIZE
config.max_seq_length = MAX_SEQ_LENGTH
config.warmup_steps = max(1, NUM_STEPS // 10)
config.log_every_steps = max(1, NUM_STEPS // 20)
config.eval_every_steps = config.checkpoint_every_steps = max(1, NUM_STEPS // 2)
config.eval_steps = 2 if ON_ACCELERATOR else 1
config.mesh.data, config.mesh.fsdp, config.mesh.tensor = MESH["data"], MESH["fsdp"], MESH["tensor"]
if not ON_ACCELERATOR:  # a smaller vocabulary, trained on fewer sentences: seconds, not minutes
  config.tokenizer.vocab_size = 2000
  config.tokenizer.max_training_sentences = 5000

result = train.train_and_evaluate(config, WORKDIR)
print("step", result["step"])
print("train", {k: round(v, 4) for k, v in result["train"].items()})
print("eval ", {k: round(v, 4) for k, v in result["eval"].items()})
workdir = epath.Path(WORKDIR)  # a local folder or a bucket: the same calls read both
print(sorted(p.name for p in workdir.iterdir()))

# %% [markdown]
# ## Watch the losses
#
# `metrics.jsonl` holds one JSON object per logged step (evaluation rows carry
# `"split": "eval"`); TensorBoard reads `WORKDIR/tensorboard`, in a bucket too (`%load_ext
# tensorboard`, `%tensorboard --logdir runs` or `--logdir gs://BUCKET/notebook/tensorboard`).

# %%
import matplotlib.pyplot as plt


def plot_metrics(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if r.get("split") != "eval"]
  eval_rows = [r for r in rows if r.get("split") == "eval"]
  fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
  for ax, key in zip(axes, ("loss", "masked_lm_accuracy", "sentence_order_accuracy")):
    ax.plot([r["step"] for r in train_rows], [r[key] for r in train_rows], label="train")
    ax.plot([r["step"] for r in eval_rows], [r[key] for r in eval_rows], "o-", label="eval")
    ax.set_title(key)
    ax.set_xlabel("step")
    ax.legend()
  fig.tight_layout()
  fig.savefig("metrics.png")  # next to the notebook (matplotlib writes local files)
  plt.show()
  return rows


rows = plot_metrics(workdir)
print(len(rows), "rows; last:", rows[-1])

# %% [markdown]
# ## Resume from the checkpoint
#
# Calling `train_and_evaluate` again on the same workdir restores the newest checkpoint (the
# train state and the data iterator's position) and continues; it is how a preempted run
# goes on (on SIGTERM the loop saves a checkpoint and stops). Here the run is extended by
# `RESUME_STEPS` steps: the learning-rate schedule is a function of `num_train_steps`, so it
# is stretched from the resumed step on.

# %%
print("checkpoints:", sorted(p.name for p in (workdir / "checkpoints").iterdir()))
config.num_train_steps = NUM_STEPS + RESUME_STEPS
result = train.train_and_evaluate(config, WORKDIR)
assert result["step"] == NUM_STEPS + RESUME_STEPS, result["step"]
rows = plot_metrics(workdir)
print("logged steps:", sorted({r["step"] for r in rows}))

# %% [markdown]
# ## Use the pretrained model
#
# The workdir is itself a checkpoint `af.from_pretrained` reads (its `config.json` and the
# final `params/`, or the newest step mid-run), with its tokenizer in `spiece.model`.

# %%
model, params = af.from_pretrained(WORKDIR, af.AlbertForSequenceClassification, num_labels=3)
tok = af.load_tokenizer(WORKDIR)  # its spiece.model
enc = tok(
  ["Return a new list.", "Open the [MASK] for reading."],
  max_length=16,
  truncation=True,
  padding="max_length",
  return_tensors="np",
)
logits = jax.jit(model.apply)(
  {"params": params},
  enc["input_ids"],
  attention_mask=enc["attention_mask"],
  token_type_ids=enc["token_type_ids"],
).logits
print(model.config.num_hidden_layers, "layers, logits", logits.shape)

# %% [markdown]
# ## The same job on every host of a pod slice
#
# A pod slice (e.g. `v4-32`: 4 hosts x 4 chips) runs one process per host, all running the
# same command; `--jax_distributed` calls `jax.distributed.initialize()`, which finds the
# other hosts by itself on Cloud TPU. Each host reads its own share of the data, and the mesh
# spans all chips. Every host must see the same workdir and corpus: a Cloud Storage bucket in
# the slice's region, which the TPU VMs' service account may read and write
# (`--workdir=gs://BUCKET/run`, `--config.data.train_files='gs://BUCKET/corpus/*.txt'`). Process
# 0 trains the tokenizer and writes the metrics and TensorBoard events there, every host writes
# its shards of each checkpoint there and reads the tokenizer back; `af.from_pretrained` and
# TensorBoard read the bucket directly. An NFS share mounted at the same path on every worker
# (e.g. Filestore) is the alternative. The cell prints the commands for this notebook's
# settings: create the bucket and grant the access, copy this checkout to every worker, install,
# run; run them from the machine that holds this checkout. See `docs/tpu.md` for the details.

# %%
import pretrain

TPU_NAME, ZONE, REGION = "albert-pod", "us-central2-b", "us-central2"
BUCKET = "gs://YOUR-PROJECT-albert"  # bucket names are global: pick your own
SHARED_WORKDIR = f"{BUCKET}/albert-{MODEL}"
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(pretrain.__file__)))
overrides = {
  "model": MODEL,
  "num_train_steps": NUM_STEPS,
  "batch_size": BATCH_SIZE,
  "max_seq_length": MAX_SEQ_LENGTH,
  "dtype": "bfloat16",
}
program = (
  "cd ~/albert-flax && python -m pretrain --config=pretrain/configs/tiny.py "
  f"--workdir={SHARED_WORKDIR} --jax_distributed "
  + " ".join(f"--config.{k}={v}" for k, v in overrides.items())
)
ssh = f"gcloud compute tpus tpu-vm ssh {TPU_NAME} --zone={ZONE} --worker=all"
install = "cd ~/albert-flax && pip install -e '.[tpu]'"
service_account = (
  "$(gcloud projects describe $(gcloud config get-value project) "
  "--format='value(projectNumber)')-compute@developer.gserviceaccount.com"
)
# 0. the bucket, in the slice's region, writable by the TPU VMs' (default) service account;
# 1. this checkout onto every worker; 2. install; 3. the job (the same command resumes it).
print(f"gcloud storage buckets create {BUCKET} --location={REGION} --uniform-bucket-level-access")
print(
  f"gcloud storage buckets add-iam-policy-binding {BUCKET} "
  f"--member=serviceAccount:{service_account} --role=roles/storage.objectUser\n"
)
print(
  f"gcloud compute tpus tpu-vm scp --recurse {CHECKOUT} {TPU_NAME}:~/albert-flax "
  f"--zone={ZONE} --worker=all\n"
)
print(f'{ssh} --command="{install}"\n')
print(f'{ssh} --command="{program}"\n')
print(f"tensorboard --logdir {SHARED_WORKDIR}/tensorboard")
