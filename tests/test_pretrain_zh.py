"""Chinese pretraining: whole-word masking over jieba-segmented words, and a tiny run that learns.

The corpus (tests/zh_testdata.py) has known word boundaries: every character belongs to one
lexicon word, each run of characters is a phrase between 「 and 」 that jieba segments into its
lexicon words. The tokenizer is af.WordPieceTokenizer.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from zh_testdata import WORD_OF_CHAR, write_corpus, write_vocab

import albert_flax as af
from albert_flax import sharding
from albert_flax.train import losses, optim, training
from pretrain import data, masking, word_segmentation


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  directory = tmp_path_factory.mktemp("zh_corpus")
  write_corpus(directory / "corpus.txt", num_docs=120)
  write_vocab(directory / "vocab.txt")
  return directory / "corpus.txt", af.WordPieceTokenizer(directory / "vocab.txt")


def _examples(corpus, segmenter, count=3000, seq=48):
  """`count` masked examples of the corpus: (original ids, masked [N, S] bool, batches)."""
  files, tokenizer = corpus
  batches = data.make_pretraining_batches(
    str(files),
    tokenizer,
    batch_size=200,
    max_seq_length=seq,
    max_predictions_per_seq=10,
    seed=0,
    process_index=0,
    process_count=1,
    word_segmenter=segmenter,
  )
  parts = [next(batches) for _ in range(count // 200)]
  batches.close()
  ex = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  rows = np.arange(len(ex["input_ids"]))[:, None].repeat(ex["masked_lm_positions"].shape[1], 1)
  chosen = ex["masked_lm_weights"] > 0
  original = ex["input_ids"].copy()
  original[rows[chosen], ex["masked_lm_positions"][chosen]] = ex["masked_lm_ids"][chosen]
  masked = np.zeros(original.shape, bool)
  masked[rows[chosen], ex["masked_lm_positions"][chosen]] = True
  return original, masked, ex


def _word_masking_counts(tokenizer, original, masked):
  """(whole, partial): lexicon-word occurrences inside complete 「phrases」 with every / only some
  of their characters masked; and the same for the English word al ##bert."""
  pieces = np.array(tokenizer.convert_ids_to_tokens(list(range(tokenizer.vocab_size))))
  counts = {"zh": [0, 0], "en": [0, 0]}
  for ids, marks in zip(original, masked):
    tokens = pieces[ids]
    j = 0
    while j < len(tokens):
      if tokens[j] == "al" and j + 1 < len(tokens) and tokens[j + 1] == "##bert":
        if marks[j] or marks[j + 1]:
          counts["en"][int(marks[j] != marks[j + 1])] += 1
        j += 2
        continue
      if tokens[j] != "「":
        j += 1
        continue
      end = j + 1
      while end < len(tokens) and tokens[end] in WORD_OF_CHAR:
        end += 1
      if end < len(tokens) and tokens[end] == "」":  # a complete phrase (not cut by truncation)
        k = j + 1
        while k < end:
          word, _ = WORD_OF_CHAR[tokens[k]]
          span = marks[k : k + len(word)]
          if span.any():
            counts["zh"][int(not span.all())] += 1
          k += len(word)
      j = end
  return counts


def test_whole_word_masking_masks_segmented_words(corpus):
  tokenizer = corpus[1]
  original, masked, ex = _examples(corpus, "jieba")
  assert len(original) >= 3000
  counts = _word_masking_counts(tokenizer, original, masked)
  # Every segmented word is masked whole; English keeps WordPiece's "##" rule.
  assert counts["zh"][1] == 0 and counts["zh"][0] > 2000, counts
  assert counts["en"][1] == 0 and counts["en"][0] > 100, counts
  # The budget is the original's: 15% of each example's tokens (at most 10), whole words
  # permitting; spans here are 2-3 characters a word, so the count stays near the budget.
  budget = np.minimum(10, np.maximum(1, np.rint(ex["attention_mask"].sum(1) * 0.15)))
  share = masked.sum(1) / budget
  assert 0.85 < share.mean() <= 1.0, share.mean()

  # Without a segmenter each character is a word (the original): words get masked in part.
  original, masked, _ = _examples(corpus, None)
  counts = _word_masking_counts(tokenizer, original, masked)
  assert counts["zh"][1] > 0.3 * sum(counts["zh"]), counts
  assert counts["en"][1] == 0, counts


def test_continuation_flags_follow_the_segmenter(corpus):
  tokenizer = corpus[1]
  sentences = ["「北京大学」，albert，「喜欢音乐」。", "我们"]
  ids = tokenizer.encode_as_ids(sentences)
  flat = np.concatenate(ids)
  flags = word_segmentation.continuation_flags(
    flat, np.array([len(i) for i in ids]), tokenizer, "jieba"
  )
  pieces = tokenizer.convert_ids_to_tokens(flat.tolist())
  continued = [p for p, f in zip(pieces, flags) if f]
  # jieba: 北京大学 (one word), 喜欢|音乐, 我们 (a second sentence: its run starts afresh); no
  # "##" piece is flagged.
  assert continued == ["京", "大", "学", "欢", "乐", "们"], list(zip(pieces, flags))
  with pytest.raises(ValueError, match="word_segmenter"):
    data.make_pretraining_batches(
      "x.txt", tokenizer, 8, 32, 4, process_index=0, process_count=1, word_segmenter="thulac"
    )


def test_mask_examples_takes_per_token_word_continuations():
  ids = np.array([[2, 10, 11, 12, 13, 3, 0]])
  starts = np.ones(20, bool)
  continues = np.array([[0, 0, 1, 1, 0, 0, 0]], bool)  # 10 11 12 is one word, 13 another
  for seed in range(20):
    m = masking.mask_examples(
      ids,
      np.array([6]),
      starts,
      np.random.default_rng(seed),
      masked_lm_prob=0.5,
      max_predictions_per_seq=4,
      max_ngram=1,
      continues_word=continues,
    )
    positions = set(m.masked_lm_positions[0][m.masked_lm_weights[0] > 0].tolist())
    assert positions in ({1, 2, 3}, {4}), positions


def test_tiny_chinese_pretraining_learns(corpus):
  """A 2-layer ALBERT on jieba whole-word-masked batches: held-back MLM accuracy goes from chance
  (1/128) to well above it in 100 LAMB steps (phrases determine their words)."""
  files, tokenizer = corpus
  batch_size, seq, predictions = 32, 32, 5
  config = af.AlbertConfig(
    vocab_size=tokenizer.vocab_size,
    embedding_size=16,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=seq,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
  )
  model = af.AlbertForPreTraining(config)
  mesh = sharding.make_mesh(-1, devices=jax.devices()[:1])  # one device: the quickest step here

  def init_params(rng):
    return model.init(
      rng, np.zeros((1, seq), np.int32), masked_positions=np.zeros((1, predictions), np.int32)
    )["params"]

  tx, schedule = optim.create_optimizer("lamb", 0.05, 100, 5)
  state, shardings = training.init_train_state(init_params, tx, mesh, jax.random.key(0))
  step = training.make_train_step(
    losses.pretraining_stats_fn(model),
    losses.pretraining_loss_weights,
    tx,
    shardings,
    mesh,
    learning_rate_fn=schedule,
  )
  options = dict(process_index=0, process_count=1, word_segmenter="jieba")
  train = data.make_pretraining_batches(
    str(files),
    tokenizer,
    batch_size,
    seq,
    predictions,
    seed=1,
    split="train",
    eval_fraction=0.1,
    **options,
  )
  held_back = data.make_pretraining_batches(
    str(files), tokenizer, 256, seq, predictions, seed=2, split="eval", eval_fraction=0.1, **options
  )
  eval_batch = next(held_back)
  held_back.close()

  @jax.jit
  def predictions_of(params):
    out = model.apply(
      {"params": params},
      eval_batch["input_ids"],
      eval_batch["attention_mask"],
      eval_batch["token_type_ids"],
      masked_positions=eval_batch["masked_lm_positions"],
    )
    return out.prediction_logits.argmax(-1)

  def accuracy(params) -> float:
    right = np.asarray(predictions_of(params)) == eval_batch["masked_lm_ids"]
    weights = eval_batch["masked_lm_weights"]
    return float((right * weights).sum() / weights.sum())

  before = accuracy(state.params)
  for _ in range(100):
    state, metrics = step(state, sharding.global_batch(next(train), mesh, batch_size))
  train.close()
  after = accuracy(state.params)
  # Measured: 0.0 -> 0.16 (chance 1/128).
  assert before < 0.03 and after > 0.1, (before, after)


def test_workdir_keeps_the_wordpiece_vocabulary(corpus, tmp_path):
  """--config.tokenizer.vocab_file: copied into the workdir as vocab.txt, a WordPiece tokenizer
  over it is what the run uses."""
  from pretrain import train as pretrain_train
  from pretrain.configs import tiny

  vocab = corpus[0].parent / "vocab.txt"
  config = tiny.get_config()
  config.tokenizer.vocab_file = str(vocab)
  tokenizer = pretrain_train.prepare_tokenizer(config, str(tmp_path))
  assert (tmp_path / "vocab.txt").read_bytes() == vocab.read_bytes()
  assert tokenizer.vocab_size == 128 and not (tmp_path / "spiece.model").exists()
  config.tokenizer.vocab_file = str(tmp_path / "missing.txt")
  with pytest.raises(FileNotFoundError, match="tokenizer.vocab_file"):
    pretrain_train.prepare_tokenizer(config, str(tmp_path / "other"))
