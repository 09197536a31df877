"""Chinese test data: a corpus whose word boundaries are known, and its WordPiece
vocabulary.

The corpus is built from LEXICON, words that share no character, so every character names its
word and its place in it. Sentences are fixed phrases of 1-3 words (a phrase determines its words,
which gives a masked LM something to learn), wrapped as 「phrase」 so that each run of CJK
characters is one phrase bounded by punctuation, with some English ("albert" = al ##bert) between
runs. Phrases are kept only if jieba segments them into exactly their words.
"""

from __future__ import annotations

import logging

import numpy as np

# Words jieba keeps whole, no character shared between two of them.
LEXICON = (
  "北京 上海 天津 重庆 大学 老师 医院 公园 我们 喜欢 研究 音乐 电影 历史 文化 经济 技术 工作 "
  "朋友 家庭 城市 世界 图书馆 火车站 飞机场 咖啡 茶叶 苹果 香蕉 米饭 面条 运动 足球 游泳 跑步 "
  "唱歌 跳舞 钢琴 写字 旅行 休息 睡觉 喝水 打开 关闭 美丽 漂亮 幸福 安静 热闹 干净 简单 困难"
).split()
PUNCTUATION = ["「", "」", "，", "。"]
ENGLISH = ["al", "##bert"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORD_OF_CHAR = {c: (w, i) for w in LEXICON for i, c in enumerate(w)}
assert len(WORD_OF_CHAR) == sum(map(len, LEXICON)), "a character in two words"


def write_vocab(path, size: int = 128) -> list[str]:
  """vocab.txt for the corpus (specials first, as albert_zh's), padded with [unused*]."""
  chars = [c for w in LEXICON for c in w]
  tokens = SPECIALS + PUNCTUATION + ENGLISH + chars
  tokens += [f"[unused{i}]" for i in range(size - len(tokens))]
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(tokens) + "\n")
  return tokens


def make_phrases(count: int, seed: int = 0) -> list[tuple[str, ...]]:
  """`count` distinct phrases of 1-3 lexicon words that jieba segments into those words."""
  import jieba

  jieba.setLogLevel(logging.WARNING)
  rng = np.random.default_rng(seed)
  phrases: list[tuple[str, ...]] = []
  while len(phrases) < count:
    words = tuple(rng.choice(LEXICON, size=int(rng.integers(1, 4)), replace=False).tolist())
    if words not in phrases and jieba.lcut("".join(words)) == list(words):
      phrases.append(words)
  return phrases


def write_corpus(path, num_docs: int, seed: int = 0, num_phrases: int = 40) -> None:
  """The original format: one sentence per line, a blank line between documents."""
  phrases = make_phrases(num_phrases, seed)
  rng = np.random.default_rng(seed + 1)
  with open(path, "w", encoding="utf-8") as f:
    for _ in range(num_docs):
      for _ in range(int(rng.integers(6, 12))):
        parts = ["「" + "".join(phrases[int(rng.integers(len(phrases)))]) + "」"]
        if rng.random() < 0.5:
          parts.append("，albert，「" + "".join(phrases[int(rng.integers(len(phrases)))]) + "」")
        f.write("".join(parts) + "。\n")
      f.write("\n")
