# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# # albert-flax quickstart
#
# ALBERT in JAX/Flax, end to end on whatever this runtime has (CPU, GPU or TPU):
#
# 1. a SentencePiece tokenizer, trained here in seconds;
# 2. a model: `albert/albert-base-v2` from the Hugging Face Hub when online, otherwise a tiny
#    random model made locally in transformers' format, loaded with `af.from_pretrained`;
# 3. every task head on a batch;
# 4. a few fine-tuning steps with optax and `albert_flax.train.losses`;
# 5. an orbax checkpoint, loaded back from plain JAX code that does not import albert-flax;
# 6. export to transformers' format, loaded by `transformers.AlbertForSequenceClassification`.
#
# Everything is written under `WORKDIR`.

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
  subprocess.check_call(
    [sys.executable, "-m", "pip", "install", "-q", PIP_SPEC, "transformers<5", "torch"]
  )

# %% tags=["parameters"]
# Parameters (the test suite overrides them with tiny values).
HUB_ID = (
  "albert/albert-base-v2"  # used when online; offline (HF_HUB_OFFLINE=1) a tiny model is made
)
WORKDIR = "albert_quickstart"
FINETUNE_STEPS = 30

# %%
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import albert_flax as af

OFFLINE = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
os.makedirs(WORKDIR, exist_ok=True)
print("devices:", jax.devices())
print("offline:", OFFLINE)

# %% [markdown]
# ## 1. A tokenizer
#
# ALBERT tokenizes with a SentencePiece unigram model: ids 0..4 are `<pad>`, `<unk>`, `[CLS]`,
# `[SEP]`, `[MASK]`, and text is normalized as the original does (spaces collapsed, accents
# stripped, lower case). `af.train_tokenizer` trains one on any text files with one sentence
# per line; here the built-in corpus (the docstrings of Python's standard library, built
# locally, no download) and a small vocabulary.

# %%
from pretrain import builtin_corpus

corpus_path = builtin_corpus.builtin_corpus_path()  # one sentence per line, cached
spm_path = af.train_tokenizer(
  corpus_path,
  vocab_size=1000,
  model_prefix=os.path.join(WORKDIR, "spiece"),
  input_sentence_size=5000,
)
tok = af.AlbertTokenizer(spm_path)
print(tok.tokenize("ALBERT shares one layer across all depths."))
enc = tok(
  ["Return the sum of two numbers.", "Open the file for reading."],
  text_pair=["The result is an int.", "Close it afterwards."],
  max_length=24,
  truncation=True,
  padding="max_length",
  return_tensors="np",
)
print({k: v.shape for k, v in enc.items()})  # each [batch, seq]
print(tok.convert_ids_to_tokens(enc["input_ids"][0]))

# %% [markdown]
# ## 2. A model
#
# `af.from_pretrained(path, ModelClass, **config_overrides)` reads a transformers directory
# (`config.json` + `model.safetensors` or `pytorch_model.bin`), a Hub id, our orbax layout,
# a pretraining workdir, or an original TF checkpoint, and returns `(model, params)`: a
# `flax.linen.Module` and its plain parameter tree.
#
# Online it loads `albert-base-v2` and its tokenizer from the Hub. Offline it first makes a
# tiny random `transformers.AlbertForPreTraining` with our vocabulary and saves it the way a
# downloaded model looks (or, without transformers, an orbax checkpoint of the `tiny` preset).

# %%
if not OFFLINE:
  from huggingface_hub import hf_hub_download

  MODEL_PATH = HUB_ID
  tok = af.AlbertTokenizer(hf_hub_download(HUB_ID, "spiece.model"))
else:
  MODEL_PATH = os.path.join(WORKDIR, "tiny-albert-transformers")
  try:
    import torch
    import transformers

    torch.manual_seed(0)
    hf_config = transformers.AlbertConfig(
      vocab_size=tok.vocab_size,
      embedding_size=32,
      hidden_size=64,
      num_hidden_layers=3,
      num_attention_heads=4,
      intermediate_size=128,
      max_position_embeddings=128,
      hidden_act="gelu_new",
      hidden_dropout_prob=0.0,
      attention_probs_dropout_prob=0.0,
    )
    transformers.AlbertForPreTraining(hf_config).save_pretrained(MODEL_PATH)
    tok.save_vocabulary(MODEL_PATH)  # spiece.model next to the weights, as on the Hub
  except ImportError:
    cfg = af.AlbertConfig.preset("tiny", vocab_size=tok.vocab_size)
    tiny = af.AlbertForPreTraining(cfg)
    tiny_params = tiny.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    af.save_pretrained(MODEL_PATH, tiny, tiny_params, format="orbax", tokenizer=tok)
print(MODEL_PATH, sorted(os.listdir(MODEL_PATH)) if os.path.isdir(MODEL_PATH) else "")

model, params = af.from_pretrained(MODEL_PATH, af.AlbertForPreTraining)
config = model.config
print(config)
print(f"{sum(x.size for x in jax.tree.leaves(params)):,} parameters")

# %% [markdown]
# The parameter tree (names follow transformers', kernels are `[in, out]`): one embedding
# table of width E, one projection E -> H, and one shared layer, whatever the depth.

# %%
from flax import traverse_util

for path, x in traverse_util.flatten_dict(params, sep="/").items():
  print(f"{path:80s} {x.shape}")

# %% [markdown]
# Pretraining outputs, and the masked-LM head asked only at the `[MASK]` positions
# (`masked_positions` [batch, P] gives `prediction_logits` [batch, P, vocab]). With
# `albert-base-v2` the prediction is a real word; with the random tiny model it is noise.

# %%
text = "The capital of France is [MASK]."
enc1 = tok([text], max_length=16, truncation=True, padding="max_length", return_tensors="np")
mask_pos = np.argwhere(enc1["input_ids"][0] == tok.convert_tokens_to_ids("[MASK]"))[:, 0]
# jax.jit: one compilation of the whole model (faster than running it op by op).
out = jax.jit(model.apply)(
  {"params": params},
  enc1["input_ids"],
  attention_mask=enc1["attention_mask"],
  token_type_ids=enc1["token_type_ids"],
  masked_positions=mask_pos[None, :],
)
print("prediction_logits", out.prediction_logits.shape, "sop_logits", out.sop_logits.shape)
top = np.asarray(jnp.argsort(-out.prediction_logits[0, 0])[:5])
print(text, "->", tok.convert_ids_to_tokens(top.tolist()))

# %% [markdown]
# ## 3. Every head
#
# Each task model reuses the checkpoint's backbone; a head the checkpoint lacks is
# initialized and named in a warning. Multiple choice takes `[batch, choices, seq]`.

# %%
enc = tok(
  ["Return the sum of two numbers.", "Open the file for reading."],
  text_pair=["The result is an int.", "Close it afterwards."],
  max_length=24,
  truncation=True,
  padding="max_length",
  return_tensors="np",
)
ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
for name, cls in af.MODEL_CLASSES.items():
  kwargs = {"num_labels": 3} if "Classification" in name else {}
  head_model, head_params = af.from_pretrained(MODEL_PATH, cls, **kwargs)
  if name == "AlbertForMultipleChoice":  # 2 questions x 2 choices
    inputs = [np.stack([a, a]) for a in (ids, mask, types)]
  else:
    inputs = [ids, mask, types]
  out = jax.jit(head_model.apply)(
    {"params": head_params}, inputs[0], attention_mask=inputs[1], token_type_ids=inputs[2]
  )
  shapes = {k: v.shape for k, v in vars(out).items() if hasattr(v, "shape")}
  print(f"{name:34s} {shapes}")

# %% [markdown]
# ## 4. Fine-tune a few steps
#
# A toy sentence-classification task: does a sentence of the corpus mention files? The model is
# `AlbertForSequenceClassification` from the same checkpoint, the loss is what transformers'
# PyTorch model computes (`losses.sequence_classification_loss`), the optimizer AdamW.
# The fine-tuning program (`python -m finetune --config=finetune/configs/glue.py ...`) does the
# same with GLUE, SQuAD, RACE and NER data, schedules, evaluation and checkpoints.

# %%
import optax

from albert_flax.train import losses

with open(corpus_path, encoding="utf-8") as f:
  sentences = [s.strip() for s in f if 20 < len(s.strip()) < 120]
positives = [s for s in sentences if "file" in s.lower()][:64]
negatives = [s for s in sentences if "file" not in s.lower()][:64]
texts = positives + negatives
labels = np.array([1] * len(positives) + [0] * len(negatives), np.int32)
order = np.random.default_rng(0).permutation(len(texts))
data = tok(
  [texts[i] for i in order],
  max_length=32,
  truncation=True,
  padding="max_length",
  return_tensors="np",
)
data = dict(data, labels=labels[order])
print({k: v.shape for k, v in data.items()})

clf, clf_params = af.from_pretrained(
  MODEL_PATH, af.AlbertForSequenceClassification, num_labels=2, label_names=("other", "files")
)
optimizer = optax.adamw(3e-5 if not OFFLINE else 1e-3, weight_decay=0.01)
opt_state = optimizer.init(clf_params)


@jax.jit
def train_step(params, opt_state, batch, rng):
  def loss_fn(p):
    logits = clf.apply(
      {"params": p},
      batch["input_ids"],
      attention_mask=batch["attention_mask"],
      token_type_ids=batch["token_type_ids"],
      deterministic=False,
      rngs={"dropout": rng},
    ).logits  # [batch, num_labels]
    # (sum, weight) pairs, so sums over devices add up; mean_loss divides.
    return losses.mean_loss(losses.sequence_classification_loss(logits, batch["labels"]))

  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


batch_size, rng = 16, jax.random.key(0)
for step in range(FINETUNE_STEPS):
  start = (step * batch_size) % (len(texts) - batch_size + 1)
  batch = {k: v[start : start + batch_size] for k, v in data.items()}
  rng, step_rng = jax.random.split(rng)
  clf_params, opt_state, loss = train_step(clf_params, opt_state, batch, step_rng)
  print(f"step {step:3d}  loss {float(loss):.4f}")
assert np.isfinite(float(loss))

# %% [markdown]
# ## 5. Save with orbax, load from plain JAX
#
# `format="orbax"` writes `config.json` (transformers' keys) and `params/` (an orbax
# `StandardCheckpointer` tree of the parameter dict above). Nothing else is needed to use it:
# the cell after next reads it with orbax and `json` only and runs the model with a 40-line
# JAX function written from the documented parameter tree (`docs/flax_interop.md`).

# %%
ckpt_dir = os.path.join(WORKDIR, "classifier-orbax")
af.save_pretrained(ckpt_dir, clf, clf_params, format="orbax", tokenizer=tok)
print(sorted(os.listdir(ckpt_dir)))
# Round trip through our own loader:
clf2, clf2_params = af.from_pretrained(ckpt_dir, af.AlbertForSequenceClassification)
print(clf2.config.num_labels, clf2.config.label_names)

# %%
# Plain JAX + orbax + json: no albert_flax below this line.
import json
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

with open(os.path.join(ckpt_dir, "config.json")) as f:
  c = json.load(f)  # a plain dict: transformers' AlbertConfig keys
p = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(ckpt_dir, "params")))


def layer_norm(x, ln):
  mean = x.mean(-1, keepdims=True)
  var = jnp.square(x - mean).mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + c["layer_norm_eps"]) * ln["scale"] + ln["bias"]


def linear(x, d):  # kernels are [in, out]
  return x @ d["kernel"] + d["bias"]


def albert_encode(p, input_ids, attention_mask, token_type_ids):
  """[batch, seq] ids -> last hidden state [batch, seq, hidden]; ALBERT with G groups."""
  assert c["hidden_act"] == "gelu_new", "this sketch knows only ALBERT's tanh gelu"
  e, enc = p["embeddings"], p["encoder"]
  batch, seq = input_ids.shape
  x = (
    e["word_embeddings"]["embedding"][input_ids]
    + e["position_embeddings"]["embedding"][jnp.arange(seq)]
    + e["token_type_embeddings"]["embedding"][token_type_ids]
  )
  h = linear(layer_norm(x, e["LayerNorm"]), enc["embedding_hidden_mapping_in"])
  heads = c["num_attention_heads"]
  head_dim = h.shape[-1] // heads
  visible = attention_mask[:, None, None, :] > 0  # [batch, 1, 1, seq]
  num_layers, num_groups = c["num_hidden_layers"], c["num_hidden_groups"]
  for step in range(num_layers):  # the same group's weights at every step: sharing
    group = enc[f"albert_layer_groups_{int(step / (num_layers / num_groups))}"]
    for i in range(c["inner_group_num"]):
      lyr = group[f"albert_layers_{i}"]
      att = lyr["attention"]
      q, k, v = (
        linear(h, att[n]).reshape(batch, seq, heads, head_dim) for n in ("query", "key", "value")
      )
      scores = jnp.einsum("bqnd,bknd->bnqk", q, k) / jnp.sqrt(head_dim)
      probs = jax.nn.softmax(jnp.where(visible, scores, -1e30), axis=-1)
      context = jnp.einsum("bnqk,bknd->bqnd", probs, v).reshape(batch, seq, -1)
      h = layer_norm(h + linear(context, att["dense"]), att["LayerNorm"])
      ffn = linear(jax.nn.gelu(linear(h, lyr["ffn"]), approximate=True), lyr["ffn_output"])
      h = layer_norm(h + ffn, lyr["full_layer_layer_norm"])
  return h


def classify(p, input_ids, attention_mask, token_type_ids):
  """-> logits [batch, num_labels]: tanh pooler on [CLS], then the classifier."""
  h = albert_encode(p["albert"], input_ids, attention_mask, token_type_ids)
  pooled = jnp.tanh(linear(h[:, 0], p["albert"]["pooler"]))
  return linear(pooled, p["classifier"])


plain_logits = jax.jit(classify)(
  p, data["input_ids"][:4], data["attention_mask"][:4], data["token_type_ids"][:4]
)
print(c["architectures"], c["id2label"], plain_logits)

# %%
# The plain function and the flax model agree.
flax_logits = jax.jit(clf.apply)(
  {"params": clf_params},
  data["input_ids"][:4],
  attention_mask=data["attention_mask"][:4],
  token_type_ids=data["token_type_ids"][:4],
).logits
np.testing.assert_allclose(np.asarray(plain_logits), np.asarray(flax_logits), atol=1e-4)
print("max |difference|:", float(jnp.max(jnp.abs(plain_logits - flax_logits))))

# %% [markdown]
# ## 6. Export to transformers
#
# `format="hf"` writes `config.json` + `model.safetensors` in transformers' names and layouts
# (`format="tf"` writes the original TF1 checkpoint). transformers' PyTorch model loads it and
# gives the same logits.

# %%
hf_dir = os.path.join(WORKDIR, "classifier-hf")
af.save_pretrained(hf_dir, clf, clf_params, format="hf", tokenizer=tok)
print(sorted(os.listdir(hf_dir)))
try:
  import torch
  import transformers
except ImportError:
  print("transformers / torch are not installed: skipping the comparison")
else:
  pt_model = transformers.AlbertForSequenceClassification.from_pretrained(hf_dir).eval()
  with torch.no_grad():
    pt_logits = pt_model(
      input_ids=torch.tensor(data["input_ids"][:4], dtype=torch.long),
      attention_mask=torch.tensor(data["attention_mask"][:4]),
      token_type_ids=torch.tensor(data["token_type_ids"][:4], dtype=torch.long),
    ).logits.numpy()
  np.testing.assert_allclose(pt_logits, np.asarray(flax_logits), atol=1e-4)
  print(
    pt_model.config.id2label,
    "max |difference|:",
    float(np.max(np.abs(pt_logits - np.asarray(flax_logits)))),
  )

# %% [markdown]
# ## 7. NNX, pipelines and the model card
#
# `af.nnx` holds every model as a `flax.nnx.Module` with its weights (the same tree as the
# linen model), trainable with `nnx.Optimizer` under `nnx.jit`. `af.pipeline` runs a saved
# model on raw text; `save_pretrained` wrote a `README.md` model card next to the weights.

# %%
from flax import nnx

nnx_clf = af.nnx.from_pretrained(hf_dir, af.AlbertForSequenceClassification)
nnx_opt = nnx.Optimizer(nnx_clf, optax.adamw(1e-3), wrt=nnx.Param)


@nnx.jit
def nnx_train_step(model, opt, batch):
  def loss_fn(model):
    logits = model(
      batch["input_ids"],
      attention_mask=batch["attention_mask"],
      token_type_ids=batch["token_type_ids"],
      deterministic=False,
    ).logits
    return losses.mean_loss(losses.sequence_classification_loss(logits, batch["labels"]))

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  opt.update(model, grads)  # in place: the module now holds the new weights
  return loss


nnx_batch = {k: v[:16] for k, v in data.items()}
for step in range(2):
  print(f"nnx step {step}  loss {float(nnx_train_step(nnx_clf, nnx_opt, nnx_batch)):.4f}")
nnx_dir = af.nnx.save_pretrained(os.path.join(WORKDIR, "classifier-nnx"), nnx_clf, tokenizer=tok)
classify = af.pipeline("text-classification", model=nnx_dir, max_length=32)
print(classify(["Open the file for reading.", "Return the sum of two numbers."]))
print(open(os.path.join(nnx_dir, "README.md")).read()[:400])
