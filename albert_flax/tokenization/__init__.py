"""Tokenizers: ALBERT's SentencePiece model and BERT's WordPiece vocabulary (the Chinese models).

sentencepiece_tokenizer  AlbertTokenizer: pieces and ids as transformers' AlbertTokenizer
wordpiece                WordPieceTokenizer: BertTokenizer's pieces (CJK characters split)
encoding                 the calling convention both share (pairs, truncation, padding,
                         overflow windows, offsets) and BatchEncoding
text_normalization       ALBERT's and BERT's text normalization, with character origins
training                 train_tokenizer (unigram) and train_wordpiece_vocab
loading                  load_tokenizer: whichever tokenizer a checkpoint or workdir holds
"""

from albert_flax.tokenization.encoding import BatchEncoding, TokenizerBase
from albert_flax.tokenization.loading import load_tokenizer
from albert_flax.tokenization.sentencepiece_tokenizer import SPIECE_UNDERLINE, AlbertTokenizer
from albert_flax.tokenization.text_normalization import normalize_text
from albert_flax.tokenization.training import (
  SPECIAL_PIECES,
  train_tokenizer,
  train_wordpiece_vocab,
)
from albert_flax.tokenization.wordpiece import WordPieceTokenizer

__all__ = [
  "SPECIAL_PIECES",
  "SPIECE_UNDERLINE",
  "AlbertTokenizer",
  "BatchEncoding",
  "TokenizerBase",
  "WordPieceTokenizer",
  "load_tokenizer",
  "normalize_text",
  "train_tokenizer",
  "train_wordpiece_vocab",
]
