"""Writes notebooks/quickstart.ipynb and notebooks/pretrain_tpu.ipynb (without outputs).

    python notebooks/build_notebooks.py

The notebooks' cells live here as plain strings so that they are reviewed and diffed as code;
tests/test_notebooks.py checks that the committed .ipynb files are exactly what this writes, then
executes them. Edit the cells here, never the .ipynb files.
"""

from __future__ import annotations

import os
import textwrap
from typing import Callable

import nbformat
from nbformat import v4

HERE = os.path.dirname(os.path.abspath(__file__))

# The install cell both notebooks start with. `find_spec` keeps it a no-op where the package is
# already importable (a checkout installed with `pip install -e .`, the test suite), so it never
# touches the network there.
INSTALL = """\
# Installs albert-flax where it is missing (Colab, a fresh TPU VM); does nothing where it is
# already importable. PIP_SPEC: this repository's URL ("git+https://...") or a local checkout.
import importlib.util
PIP_SPEC = "albert-flax"
if importlib.util.find_spec("albert_flax") is None:
  %pip install -q {PIP_SPEC} {EXTRAS}
"""


def _build(name: str, cells: list[tuple[str, str, tuple[str, ...]]], metadata: dict) -> nbformat.NotebookNode:
  """cells: (kind "md" | "code", source, tags). Cell ids are stable so regenerating is a no-op."""
  nb = v4.new_notebook(metadata=metadata)
  stem = os.path.splitext(name)[0]
  for i, (kind, source, tags) in enumerate(cells):
    source = textwrap.dedent(source).strip("\n")
    cell = v4.new_markdown_cell(source) if kind == "md" else v4.new_code_cell(source)
    if tags:
      cell.metadata["tags"] = list(tags)
    cell.id = f"{stem}-{i:02d}"
    nb.cells.append(cell)
  nbformat.validate(nb)
  return nb


def md(source: str) -> tuple[str, str, tuple[str, ...]]:
  return ("md", source, ())


def code(source: str, *tags: str) -> tuple[str, str, tuple[str, ...]]:
  return ("code", source, tags)


_KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
           "language_info": {"name": "python"}}


# =================================================================================== quickstart

def quickstart() -> nbformat.NotebookNode:
  cells = [
      md("""
      # albert-flax quickstart

      ALBERT in JAX/Flax, end to end on whatever this runtime has (CPU, GPU or TPU):

      1. a SentencePiece tokenizer, trained here in seconds;
      2. a model: `albert/albert-base-v2` from the Hugging Face Hub when online, otherwise a tiny
         random model made locally in transformers' format, loaded with `af.from_pretrained`;
      3. every task head on a batch;
      4. a few fine-tuning steps with optax and `albert_flax.task_losses`;
      5. an orbax checkpoint, loaded back from plain JAX code that does not import albert-flax;
      6. export to transformers' format, loaded by `transformers.AlbertForSequenceClassification`.

      Everything is written under `WORKDIR`.
      """),
      code(INSTALL.replace("{EXTRAS}", '"transformers<5" torch')),
      code("""
      # Parameters (the test suite overrides them with tiny values).
      HUB_ID = "albert/albert-base-v2"  # used when online; offline (HF_HUB_OFFLINE=1) a tiny model is made
      WORKDIR = "albert_quickstart"
      FINETUNE_STEPS = 30
      """, "parameters"),
      code("""
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
      """),
      md("""
      ## 1. A tokenizer

      ALBERT tokenizes with a SentencePiece unigram model: ids 0..4 are `<pad>`, `<unk>`, `[CLS]`,
      `[SEP]`, `[MASK]`, and text is normalized as the original does (spaces collapsed, accents
      stripped, lower case). `af.train_tokenizer` trains one on any text files with one sentence
      per line; here the built-in corpus (the docstrings of Python's standard library, built
      locally, no download) and a small vocabulary.
      """),
      code("""
      from pretrain import builtin_corpus

      corpus_path = builtin_corpus.builtin_corpus_path()  # one sentence per line, cached
      spm_path = af.train_tokenizer(corpus_path, vocab_size=1000,
                                    model_prefix=os.path.join(WORKDIR, "spiece"),
                                    input_sentence_size=5000)
      tok = af.AlbertTokenizer(spm_path)
      print(tok.tokenize("ALBERT shares one layer across all depths."))
      enc = tok(["Return the sum of two numbers.", "Open the file for reading."],
                text_pair=["The result is an int.", "Close it afterwards."],
                max_length=24, truncation=True, padding="max_length", return_tensors="np")
      print({k: v.shape for k, v in enc.items()})  # each [batch, seq]
      print(tok.convert_ids_to_tokens(enc["input_ids"][0]))
      """),
      md("""
      ## 2. A model

      `af.from_pretrained(path, ModelClass, **config_overrides)` reads a transformers directory
      (`config.json` + `model.safetensors` or `pytorch_model.bin`), a Hub id, our orbax layout,
      a pretraining workdir, or an original TF checkpoint, and returns `(model, params)`: a
      `flax.linen.Module` and its plain parameter tree.

      Online it loads `albert-base-v2` and its tokenizer from the Hub. Offline it first makes a
      tiny random `transformers.AlbertForPreTraining` with our vocabulary and saves it the way a
      downloaded model looks (or, without transformers, an orbax checkpoint of the `tiny` preset).
      """),
      code("""
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
              vocab_size=tok.vocab_size, embedding_size=32, hidden_size=64, num_hidden_layers=3,
              num_attention_heads=4, intermediate_size=128, max_position_embeddings=128,
              hidden_act="gelu_new", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
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
      """),
      md("""
      The parameter tree (names follow transformers', kernels are `[in, out]`): one embedding
      table of width E, one projection E -> H, and one shared layer, whatever the depth.
      """),
      code("""
      from flax import traverse_util

      for path, x in traverse_util.flatten_dict(params, sep="/").items():
        print(f"{path:80s} {x.shape}")
      """),
      md("""
      Pretraining outputs, and the masked-LM head asked only at the `[MASK]` positions
      (`masked_positions` [batch, P] gives `prediction_logits` [batch, P, vocab]). With
      `albert-base-v2` the prediction is a real word; with the random tiny model it is noise.
      """),
      code("""
      text = "The capital of France is [MASK]."
      enc1 = tok([text], max_length=16, truncation=True, padding="max_length", return_tensors="np")
      mask_pos = np.argwhere(enc1["input_ids"][0] == tok.convert_tokens_to_ids("[MASK]"))[:, 0]
      # jax.jit: one compilation of the whole model (faster than running it op by op).
      out = jax.jit(model.apply)({"params": params}, enc1["input_ids"],
                                 attention_mask=enc1["attention_mask"],
                                 token_type_ids=enc1["token_type_ids"],
                                 masked_positions=mask_pos[None, :])
      print("prediction_logits", out.prediction_logits.shape, "sop_logits", out.sop_logits.shape)
      top = np.asarray(jnp.argsort(-out.prediction_logits[0, 0])[:5])
      print(text, "->", tok.convert_ids_to_tokens(top.tolist()))
      """),
      md("""
      ## 3. Every head

      Each task model reuses the checkpoint's backbone; a head the checkpoint lacks is
      initialized and named in a warning. Multiple choice takes `[batch, choices, seq]`.
      """),
      code("""
      enc = tok(["Return the sum of two numbers.", "Open the file for reading."],
                text_pair=["The result is an int.", "Close it afterwards."],
                max_length=24, truncation=True, padding="max_length", return_tensors="np")
      ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
      for name, cls in af.MODEL_CLASSES.items():
        kwargs = {"num_labels": 3} if "Classification" in name else {}
        head_model, head_params = af.from_pretrained(MODEL_PATH, cls, **kwargs)
        if name == "AlbertForMultipleChoice":  # 2 questions x 2 choices
          inputs = [np.stack([a, a]) for a in (ids, mask, types)]
        else:
          inputs = [ids, mask, types]
        out = jax.jit(head_model.apply)({"params": head_params}, inputs[0],
                                        attention_mask=inputs[1], token_type_ids=inputs[2])
        shapes = {k: v.shape for k, v in vars(out).items() if hasattr(v, "shape")}
        print(f"{name:34s} {shapes}")
      """),
      md("""
      ## 4. Fine-tune a few steps

      A toy sentence-classification task: does a sentence of the corpus mention files? The model is
      `AlbertForSequenceClassification` from the same checkpoint, the loss is what transformers'
      PyTorch model computes (`task_losses.sequence_classification_loss`), the optimizer AdamW.
      The fine-tuning program (`python -m finetune --config=finetune/configs/glue.py ...`) does the
      same with GLUE, SQuAD, RACE and NER data, schedules, evaluation and checkpoints.
      """),
      code("""
      import optax
      from albert_flax import task_losses

      with open(corpus_path, encoding="utf-8") as f:
        sentences = [s.strip() for s in f if 20 < len(s.strip()) < 120]
      positives = [s for s in sentences if "file" in s.lower()][:64]
      negatives = [s for s in sentences if "file" not in s.lower()][:64]
      texts = positives + negatives
      labels = np.array([1] * len(positives) + [0] * len(negatives), np.int32)
      order = np.random.default_rng(0).permutation(len(texts))
      data = tok([texts[i] for i in order], max_length=32, truncation=True,
                 padding="max_length", return_tensors="np")
      data = dict(data, labels=labels[order])
      print({k: v.shape for k, v in data.items()})

      clf, clf_params = af.from_pretrained(MODEL_PATH, af.AlbertForSequenceClassification,
                                           num_labels=2, label_names=("other", "files"))
      optimizer = optax.adamw(3e-5 if not OFFLINE else 1e-3, weight_decay=0.01)
      opt_state = optimizer.init(clf_params)


      @jax.jit
      def train_step(params, opt_state, batch, rng):
        def loss_fn(p):
          logits = clf.apply({"params": p}, batch["input_ids"],
                             attention_mask=batch["attention_mask"],
                             token_type_ids=batch["token_type_ids"], deterministic=False,
                             rngs={"dropout": rng}).logits  # [batch, num_labels]
          # (sum, weight) pairs, so sums over devices add up; mean_loss divides.
          return task_losses.mean_loss(
              task_losses.sequence_classification_loss(logits, batch["labels"]))
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss


      batch_size, rng = 16, jax.random.key(0)
      for step in range(FINETUNE_STEPS):
        start = (step * batch_size) % (len(texts) - batch_size + 1)
        batch = {k: v[start:start + batch_size] for k, v in data.items()}
        rng, step_rng = jax.random.split(rng)
        clf_params, opt_state, loss = train_step(clf_params, opt_state, batch, step_rng)
        print(f"step {step:3d}  loss {float(loss):.4f}")
      assert np.isfinite(float(loss))
      """),
      md("""
      ## 5. Save with orbax, load from plain JAX

      `format="orbax"` writes `config.json` (transformers' keys) and `params/` (an orbax
      `StandardCheckpointer` tree of the parameter dict above). Nothing else is needed to use it:
      the cell after next reads it with orbax and `json` only and runs the model with a 40-line
      JAX function written from the documented parameter tree (`docs/flax_interop.md`).
      """),
      code("""
      ckpt_dir = os.path.join(WORKDIR, "classifier-orbax")
      af.save_pretrained(ckpt_dir, clf, clf_params, format="orbax", tokenizer=tok)
      print(sorted(os.listdir(ckpt_dir)))
      # Round trip through our own loader:
      clf2, clf2_params = af.from_pretrained(ckpt_dir, af.AlbertForSequenceClassification)
      print(clf2.config.num_labels, clf2.config.label_names)
      """),
      code("""
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
        \"\"\"[batch, seq] ids -> last hidden state [batch, seq, hidden]; ALBERT with G groups.\"\"\"
        assert c["hidden_act"] == "gelu_new", "this sketch knows only ALBERT's tanh gelu"
        e, enc = p["embeddings"], p["encoder"]
        batch, seq = input_ids.shape
        x = (e["word_embeddings"]["embedding"][input_ids]
             + e["position_embeddings"]["embedding"][jnp.arange(seq)]
             + e["token_type_embeddings"]["embedding"][token_type_ids])
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
            q, k, v = (linear(h, att[n]).reshape(batch, seq, heads, head_dim)
                       for n in ("query", "key", "value"))
            scores = jnp.einsum("bqnd,bknd->bnqk", q, k) / jnp.sqrt(head_dim)
            probs = jax.nn.softmax(jnp.where(visible, scores, -1e30), axis=-1)
            context = jnp.einsum("bnqk,bknd->bqnd", probs, v).reshape(batch, seq, -1)
            h = layer_norm(h + linear(context, att["dense"]), att["LayerNorm"])
            ffn = linear(jax.nn.gelu(linear(h, lyr["ffn"]), approximate=True), lyr["ffn_output"])
            h = layer_norm(h + ffn, lyr["full_layer_layer_norm"])
        return h


      def classify(p, input_ids, attention_mask, token_type_ids):
        \"\"\"-> logits [batch, num_labels]: tanh pooler on [CLS], then the classifier.\"\"\"
        h = albert_encode(p["albert"], input_ids, attention_mask, token_type_ids)
        pooled = jnp.tanh(linear(h[:, 0], p["albert"]["pooler"]))
        return linear(pooled, p["classifier"])


      plain_logits = jax.jit(classify)(p, data["input_ids"][:4], data["attention_mask"][:4],
                                       data["token_type_ids"][:4])
      print(c["architectures"], c["id2label"], plain_logits)
      """),
      code("""
      # The plain function and the flax model agree.
      flax_logits = jax.jit(clf.apply)({"params": clf_params}, data["input_ids"][:4],
                                       attention_mask=data["attention_mask"][:4],
                                       token_type_ids=data["token_type_ids"][:4]).logits
      np.testing.assert_allclose(np.asarray(plain_logits), np.asarray(flax_logits), atol=1e-4)
      print("max |difference|:", float(jnp.max(jnp.abs(plain_logits - flax_logits))))
      """),
      md("""
      ## 6. Export to transformers

      `format="hf"` writes `config.json` + `model.safetensors` in transformers' names and layouts
      (`format="tf"` writes the original TF1 checkpoint). transformers' PyTorch model loads it and
      gives the same logits.
      """),
      code("""
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
          pt_logits = pt_model(input_ids=torch.tensor(data["input_ids"][:4], dtype=torch.long),
                               attention_mask=torch.tensor(data["attention_mask"][:4]),
                               token_type_ids=torch.tensor(data["token_type_ids"][:4],
                                                           dtype=torch.long)).logits.numpy()
        np.testing.assert_allclose(pt_logits, np.asarray(flax_logits), atol=1e-4)
        print(pt_model.config.id2label, "max |difference|:",
              float(np.max(np.abs(pt_logits - np.asarray(flax_logits)))))
      """),
  ]
  return _build("quickstart.ipynb", cells, dict(_KERNEL))


# =================================================================================== pretraining

def pretrain_tpu() -> nbformat.NotebookNode:
  cells = [
      md("""
      # Pretraining ALBERT on a TPU

      Runs `pretrain.train.train_and_evaluate` (the program behind `python -m pretrain`) from a
      notebook: on a Colab TPU runtime (*Runtime > Change runtime type > TPU*), on a single-host
      TPU VM, or on any CPU/GPU machine (there it shrinks itself to a few steps). The data is the
      built-in corpus (docstrings of Python's standard library: no download), the model the
      `tiny` preset; set `MODEL = "base-v2"` and real text for the real thing.

      The last section gives the commands that run the same job on every host of a pod slice.
      """),
      code(INSTALL.replace("{EXTRAS}", "matplotlib")),
      code("""
      # Parameters. None: chosen below from the hardware (TPU: a real short run; CPU: a few steps).
      WORKDIR = "runs/notebook"
      MODEL = "tiny"  # a preset of af.AlbertConfig: tiny, base-v2, large-v2, xlarge-v2, xxlarge-v2
      NUM_STEPS = None  # first leg of training
      RESUME_STEPS = None  # further steps after resuming from the checkpoint
      BATCH_SIZE = None  # global batch: all devices of all hosts together
      MAX_SEQ_LENGTH = 128
      MESH = {"data": -1, "fsdp": 1, "tensor": 1}  # -1: the devices the other axes leave
      """, "parameters"),
      md("""
      ## Devices

      On a TPU VM `jax.devices()` lists the TPU cores of this host (and, on a pod slice after
      `jax.distributed.initialize()`, of every host). Nothing here is TPU-specific: the same
      cells run on CPU.
      """),
      code("""
      import json
      import logging
      import os

      import jax
      import numpy as np

      import albert_flax as af
      from albert_flax import sharding

      logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                          force=True)
      for noisy in ("absl", "jax", "orbax", "etils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

      # Compiled programs are cached on disk: a rerun, or the resumed run below, skips compiling.
      jax.config.update("jax_compilation_cache_dir", os.path.abspath("jax_cache"))

      BACKEND = jax.default_backend()
      ON_ACCELERATOR = BACKEND in ("tpu", "gpu")
      print(f"backend {BACKEND}: {jax.device_count()} devices, {jax.local_device_count()} on this "
            f"host, {jax.process_count()} host(s)")
      for d in jax.local_devices():
        print("  ", d, getattr(d, "device_kind", ""))

      NUM_STEPS = NUM_STEPS or (2000 if ON_ACCELERATOR else 40)
      RESUME_STEPS = RESUME_STEPS or (500 if ON_ACCELERATOR else 10)
      BATCH_SIZE = BATCH_SIZE or (256 if ON_ACCELERATOR else 16)
      print(dict(NUM_STEPS=NUM_STEPS, RESUME_STEPS=RESUME_STEPS, BATCH_SIZE=BATCH_SIZE))
      """),
      md("""
      ## The mesh

      Every array lives on a `("data", "fsdp", "tensor")` mesh over all devices: `data` splits
      the batch, `fsdp` splits the batch *and* the parameters and optimizer state, `tensor`
      splits attention heads, FFN width and vocabulary. Parameters carry logical axis names;
      `sharding.LOGICAL_RULES` maps them onto the mesh. Below: how each parameter of the
      model would be laid out (computed from shapes only, nothing is allocated).
      """),
      code("""
      import jax.numpy as jnp

      mesh = sharding.make_mesh(**MESH)
      print("mesh:", dict(mesh.shape))

      model_config = af.AlbertConfig.preset(MODEL)
      abstract = jax.eval_shape(af.AlbertForPreTraining(model_config).init, jax.random.key(0),
                                jnp.zeros((1, 8), jnp.int32))["params"]
      shardings = sharding.tree_shardings(abstract, mesh)
      for path, s in jax.tree_util.tree_flatten_with_path(shardings)[0][:8]:
        print(f"{jax.tree_util.keystr(path):100s} {s.spec}")
      """),
      md("""
      ## Train

      The config is the `tiny` one (`pretrain/configs/tiny.py`) with the sizes above; every key is
      documented in `pretrain/configs/common.py`. `train_and_evaluate(config, workdir)` trains a
      tokenizer on the corpus (kept in the workdir), builds the model, shards the state over the
      mesh, and runs the jitted step (MLM + sentence-order losses, LAMB), writing
      `metrics.jsonl`, TensorBoard events and orbax checkpoints (with the data position).
      """),
      code("""
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
      print(sorted(os.listdir(WORKDIR)))
      """),
      md("""
      ## Watch the losses

      `metrics.jsonl` holds one JSON object per logged step (evaluation rows carry
      `"split": "eval"`); TensorBoard reads `WORKDIR/tensorboard` (`%load_ext tensorboard`,
      `%tensorboard --logdir runs`).
      """),
      code("""
      import matplotlib.pyplot as plt


      def plot_metrics(workdir):
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
          rows = [json.loads(line) for line in f]
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
        fig.savefig(os.path.join(workdir, "metrics.png"))
        plt.show()
        return rows


      rows = plot_metrics(WORKDIR)
      print(len(rows), "rows; last:", rows[-1])
      """),
      md("""
      ## Resume from the checkpoint

      Calling `train_and_evaluate` again on the same workdir restores the newest checkpoint (the
      train state and the data iterator's position) and continues; it is how a preempted run
      goes on (on SIGTERM the loop saves a checkpoint and stops). Here the run is extended by
      `RESUME_STEPS` steps: the learning-rate schedule is a function of `num_train_steps`, so it
      is stretched from the resumed step on.
      """),
      code("""
      print("checkpoints:", sorted(os.listdir(os.path.join(WORKDIR, "checkpoints"))))
      config.num_train_steps = NUM_STEPS + RESUME_STEPS
      result = train.train_and_evaluate(config, WORKDIR)
      assert result["step"] == NUM_STEPS + RESUME_STEPS, result["step"]
      rows = plot_metrics(WORKDIR)
      print("logged steps:", sorted({r["step"] for r in rows}))
      """),
      md("""
      ## Use the pretrained model

      The workdir is itself a checkpoint `af.from_pretrained` reads (its `config.json` and the
      final `params/`, or the newest step mid-run), with its tokenizer in `spiece.model`.
      """),
      code("""
      model, params = af.from_pretrained(WORKDIR, af.AlbertForSequenceClassification, num_labels=3)
      tok = af.AlbertTokenizer(os.path.join(WORKDIR, "spiece.model"))
      enc = tok(["Return a new list.", "Open the [MASK] for reading."], max_length=16,
                truncation=True, padding="max_length", return_tensors="np")
      logits = jax.jit(model.apply)({"params": params}, enc["input_ids"],
                                    attention_mask=enc["attention_mask"],
                                    token_type_ids=enc["token_type_ids"]).logits
      print(model.config.num_hidden_layers, "layers, logits", logits.shape)
      """),
      md("""
      ## The same job on every host of a pod slice

      A pod slice (e.g. `v4-32`: 4 hosts x 4 chips) runs one process per host, all running the
      same command; `--jax_distributed` calls `jax.distributed.initialize()`, which finds the
      other hosts by itself on Cloud TPU. Each host reads its own share of the data, and the mesh
      spans all chips. The workdir must be a directory every host sees at the same path (an NFS
      share such as Filestore, mounted on each worker): process 0 trains the tokenizer and writes
      the metrics there, and every host writes its shards of each checkpoint. The cell prints the
      commands for this notebook's settings; run them from the machine that holds this checkout.
      See `docs/tpu.md` for creating the slice and mounting the share.
      """),
      code("""
      import pretrain

      TPU_NAME, ZONE = "albert-pod", "us-central2-b"
      SHARED_WORKDIR = "/mnt/shared/albert-" + MODEL
      CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(pretrain.__file__)))
      overrides = {"model": MODEL, "num_train_steps": NUM_STEPS, "batch_size": BATCH_SIZE,
                   "max_seq_length": MAX_SEQ_LENGTH, "dtype": "bfloat16"}
      program = ("cd ~/albert-flax && python -m pretrain --config=pretrain/configs/tiny.py "
                 f"--workdir={SHARED_WORKDIR} --jax_distributed "
                 + " ".join(f"--config.{k}={v}" for k, v in overrides.items()))
      ssh = f"gcloud compute tpus tpu-vm ssh {TPU_NAME} --zone={ZONE} --worker=all"
      install = "cd ~/albert-flax && pip install -e '.[tpu]'"
      # 1. this checkout onto every worker; 2. install; 3. the job (the same command resumes it).
      print(f"gcloud compute tpus tpu-vm scp --recurse {CHECKOUT} {TPU_NAME}:~/albert-flax "
            f"--zone={ZONE} --worker=all\\n")
      print(f'{ssh} --command="{install}"\\n')
      print(f'{ssh} --command="{program}"')
      """),
  ]
  return _build("pretrain_tpu.ipynb", cells, dict(_KERNEL, accelerator="TPU",
                                                  colab={"provenance": []}))


NOTEBOOKS: dict[str, Callable[[], nbformat.NotebookNode]] = {
    "quickstart.ipynb": quickstart,
    "pretrain_tpu.ipynb": pretrain_tpu,
}


def main() -> None:
  for name, build in NOTEBOOKS.items():
    path = os.path.join(HERE, name)
    nbformat.write(build(), path)
    print("wrote", path)


if __name__ == "__main__":
  main()
