"""Every key of a pretraining config, with the paper's recipe as defaults (see base.py etc.).

Not meant to be run directly; the per-size files start from `get_config()` (tiny.py) or from
`pod_config()` (the released sizes, base.py .. xxlarge.py), and state what differs.

`get_config` is one list of assignments, each key beside its meaning: it stays one function.
"""

import dataclasses

import ml_collections
from ml_collections import config_dict

from albert_flax.config import AlbertConfig
from albert_flax.train import profiling

# AlbertConfig fields that are not model_overrides: set by the run itself (vocab_size from the
# tokenizer; dtype, param_dtype, remat are top-level keys) or meaningless for pretraining
# (fine-tuning head settings). Field -> why, for the message a command line naming one gets.
NOT_OVERRIDABLE = {
  "vocab_size": "it comes from the tokenizer (--config.tokenizer.vocab_size for a trained one)",
  "dtype": "it is the top-level key --config.dtype",
  "param_dtype": "it is the top-level key --config.param_dtype",
  "remat": "it is the top-level key --config.remat",
  "num_labels": "a fine-tuning head setting (the fine-tuning configs set it per task)",
  "problem_type": "a fine-tuning head setting (the fine-tuning configs set it per task)",
  "label_names": "a fine-tuning head setting (the fine-tuning configs set it per task)",
}
_TYPES = {
  "int": int,
  "float": float,
  "str": str,
  "bool": bool,
  "float | None": float,
  "str | None": str,
}


def model_overrides() -> ml_collections.ConfigDict:
  """Every AlbertConfig field as an unset placeholder, so `--config.model_overrides.X=V` works
  for any of them; unset ones keep the preset's value."""
  c = ml_collections.ConfigDict()
  for field in dataclasses.fields(AlbertConfig):
    if field.name not in NOT_OVERRIDABLE and field.type in _TYPES:
      c[field.name] = config_dict.placeholder(_TYPES[field.type])
  return c


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # --- model: a preset of albert_flax.AlbertConfig plus overrides of any of its fields.
  # vocab_size always comes from the tokenizer.
  c.model = "base-v2"
  c.model_overrides = model_overrides()
  c.dtype = "bfloat16"  # compute dtype of the matmuls; params, LayerNorm, softmax, losses: float32
  c.param_dtype = "float32"  # dtype of the stored parameters and optimizer state
  # "none" | "full" | "dots" | "dots_with_no_batch_dims". "dots" (save the GEMM outputs, recompute
  # the rest) by measurement (benchmarks/RESULTS.md, issue 15): base train step on a 2-core AVX2
  # EPYC, dots / none 1.06x in f32 and 1.07x in bf16 (6.29 vs 6.76 s), 1.4x on a bf16 Xeon
  # (issue 15), with 0.4x the temp memory (643 vs 1603 MiB). xlarge/xxlarge override with "full".
  c.remat = "dots"
  # Continue pretraining from any checkpoint af.from_pretrained reads (a workdir, an orbax or HF
  # directory, a TF checkpoint, a hub id). Empty: start from scratch.
  c.init_from = ""
  # With init_from a pretraining workdir whose run has not finished: the checkpoint to take, a
  # step number or "latest" (an unfinished run is refused without one).
  c.init_from_step = ""

  # --- data (pretrain.data.make_pretraining_batches)
  c.data = ml_collections.ConfigDict()
  # Text files in the original format (globs, comma-separated), "builtin" (the Python standard
  # library's docstrings: no download), or .array_record static shards from pretrain.create_data.
  c.data.train_files = "builtin"
  # Held-back text for evaluation. Empty: the `eval_fraction` of the training documents that the
  # training stream skips (chosen by a hash of each document's first sentence).
  c.data.eval_files = ""
  c.data.eval_fraction = 0.02  # share of the documents held back when eval_files is empty
  c.data.tfds_name = ""  # a tensorflow-datasets text data set instead of train_files
  c.data.tfds_split = "train"  # the tensorflow-datasets split to read
  c.data.tfds_data_dir = ""  # tensorflow-datasets' data_dir (empty: its default)
  c.data.tfds_field = "text"  # the text field of each tensorflow-datasets record
  c.data.masked_lm_prob = 0.15  # share of the tokens masked (at most max_predictions_per_seq)
  c.data.short_seq_prob = 0.1  # share of examples cut shorter than max_seq_length, as BERT's data
  c.data.max_ngram = 3  # masked spans of 1..max_ngram whole words, p(n) ~ 1/n
  # Chinese whole-word masking (a WordPiece vocabulary): "jieba" masks segmented words whole;
  # "" masks each CJK character as a word, as the original.
  c.data.word_segmenter = ""
  c.data.shuffle_buffer = 0  # 0: the pipeline's default
  c.data.num_workers = 0  # grain mp_prefetch processes making examples per host

  # --- tokenizer
  c.tokenizer = ml_collections.ConfigDict()
  # A SentencePiece model. Empty: train one on the training documents (kept in the workdir as
  # spiece.model), or take spiece.model from `init_from`'s directory when continuing.
  c.tokenizer.spm_model = ""
  # A BERT WordPiece vocabulary (vocab.txt: Chinese models) instead; kind "wordpiece" without a
  # vocab_file trains one on the documents (kept as vocab.txt). kind "": WordPiece when
  # vocab_file is set, else SentencePiece.
  c.tokenizer.vocab_file = ""
  c.tokenizer.kind = ""  # "", "sentencepiece" or "wordpiece"
  c.tokenizer.vocab_size = 30000  # pieces of a trained tokenizer (it may come out smaller: logged)
  c.tokenizer.do_lower_case = True  # lower-case the text (and strip accents), as the English models
  c.tokenizer.max_training_sentences = 5_000_000  # lines streamed to the tokenizer trainer

  # --- optimization (Lan et al., section 4.1)
  c.num_train_steps = 125_000  # optimizer steps of the whole run
  c.batch_size = 4096  # global: all processes together
  c.max_seq_length = 512  # tokens per example (the model's max_position_embeddings at most)
  c.max_predictions_per_seq = 20  # masked positions per example, at most
  c.optimizer = "lamb"  # "lamb" | "adamw"
  # AdamW only: bias-corrected moments (optax.adamw), which the tiny config's AdamW was tuned
  # with. LAMB (the paper's recipe) ignores it: the original LAMB never bias-corrects.
  c.adam_bias_correction = True
  c.learning_rate = 0.00176  # peak learning rate, after the warm-up
  c.warmup_steps = 3125  # linear warm-up steps, then polynomial (linear) decay to 0
  c.weight_decay = 0.01  # decoupled weight decay (LayerNorm and biases excluded)
  c.grad_clip_norm = 1.0  # gradients clipped to this global norm (0: no clipping)
  c.grad_accum_steps = 1  # micro-batches per step (the result equals one big batch)
  c.seed = 0  # parameter initialization, data order and masking
  # The inter-sentence loss (pretrain.sentence_loss): "sop" (ALBERT), "nsp" (BERT: half of the
  # pairs take segment B from another document) or "none" (masked LM only). Evaluation scores the
  # sentence head on both kinds of pairs whatever is trained (pretrain.evaluation).
  c.sentence_loss = "sop"

  # --- loop
  c.log_every_steps = 100  # train metrics (loss, accuracy, grad_norm) logged every N steps
  # a checkpoint of the train state (and data position) every N steps
  c.checkpoint_every_steps = 5000
  c.checkpoint_max_to_keep = 3  # the newest N checkpoints are kept
  c.eval_every_steps = 5000  # evaluation on held-back examples every N steps
  c.eval_steps = 10  # batches of batch_size held-back examples per evaluation
  # A tqdm bar on a terminal; without one (or with False) plain log lines every log_every_steps.
  c.progress_bar = True
  profiling.add_config_keys(c)  # profile_steps, slow_step_factor, ...

  # --- device mesh: data x fsdp x tensor over all devices of all processes; -1 = the rest
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  return c


def pod_config(model: str, fsdp: int = 1, tensor: int = 1) -> ml_collections.ConfigDict:
  """The paper's recipe for a released size on a TPU pod slice: batch 4096 x 512, 20 predictions,
  LAMB lr 0.00176, 3125 warm-up, 125k steps, bf16 compute with float32 parameters, and remat
  "full" (the shared layer recomputed in the backward pass; each size's docstring has the TPU
  compiler's memory figures). Parameters and LAMB moments split over `fsdp` devices within each
  data replica, the FFN/attention width over `tensor`. Commands for a pod slice: docs/tpu.md.
  """
  c = get_config()
  c.model = model
  c.remat = "full"
  c.mesh.fsdp = fsdp
  c.mesh.tensor = tensor
  return c
