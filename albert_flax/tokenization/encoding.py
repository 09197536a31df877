"""What both tokenizers share: model inputs from token ids, as transformers builds them.

`TokenizerBase.__call__` turns texts (or pairs, or batches) into `input_ids`, `token_type_ids`,
`attention_mask` and, on request, `offset_mapping` (each token's character span in the raw text)
and overflowing windows over long texts (`stride`, `return_overflowing_tokens`, with
`overflow_to_sample_mapping`), with transformers' truncation and padding rules. A tokenizer
supplies the ids: `encode_as_ids` (fast batches) and `_encode_with_offsets` (ids and spans), the
special-token ids by name and `convert_ids_to_tokens` / `convert_tokens_to_string`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from albert_flax import paths
from albert_flax.workdir import TOKENIZER_CONFIG_FILE

_TRUNCATIONS = (True, False, "longest_first", "only_first", "only_second", "do_not_truncate")
_PADDINGS = (True, False, "longest", "max_length", "do_not_pad")
_NO_SPAN = (0, 0)  # the span of special tokens and padding, as transformers writes it


class BatchEncoding(dict):
  """The output of a tokenizer's `__call__`: a dict whose keys also read as attributes."""

  def __getattr__(self, name: str) -> Any:
    try:
      return self[name]
    except KeyError:
      raise AttributeError(name) from None


def _windows(length: int, room: int, stride: int) -> list[tuple[int, int]]:
  """[start, stop) windows of at most `room` tokens over `length`, each starting `room - stride`
  after the previous, the last one reaching the end (as the tokenizers library cuts them)."""
  if length <= room:
    return [(0, length)]
  out = []
  for start in range(0, length, room - stride):
    stop = min(start + room, length)
    out.append((start, stop))
    if stop == length:
      break
  return out


class TokenizerBase:
  """Model inputs from a subclass's token ids: special tokens, truncation, padding, offsets."""

  vocab_size: int  # a subclass's property

  def __len__(self) -> int:
    return self.vocab_size

  @staticmethod
  def _vocabulary_path(
    save_directory: str | os.PathLike, filename_prefix: str | None, file_name: str
  ) -> str:
    """`<save_directory>/[prefix-]<file_name>`, for save_vocabulary; a local directory must exist
    (a bucket has no directories: gs://... is taken as it is)."""
    directory = paths.path(save_directory)
    if paths.is_local(directory) and not directory.is_dir():
      raise NotADirectoryError(
        f"save_vocabulary: {os.fspath(save_directory)!r} is not an existing directory"
      )
    return os.fspath(directory / ((filename_prefix + "-" if filename_prefix else "") + file_name))

  def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, str]:
    """Write the vocabulary (`save_vocabulary`) and a tokenizer_config.json naming this tokenizer
    and its settings (`tokenizer_config()`: what `af.load_tokenizer` and transformers'
    AutoTokenizer read), local or gs://...; returns both paths."""
    (vocab,) = self.save_vocabulary(save_directory)
    path = paths.path(save_directory) / TOKENIZER_CONFIG_FILE
    paths.write_json(path, self.tokenizer_config(), indent=2, ensure_ascii=False)
    return vocab, os.fspath(path)

  pad_token_id: int
  unk_token_id: int
  cls_token_id: int
  sep_token_id: int
  mask_token_id: int
  all_special_ids: frozenset[int]

  # ----------------------------------------------------------------- supplied by the subclass
  def encode_as_ids(self, texts: str | Sequence[str]) -> list[int] | list[list[int]]:
    raise NotImplementedError

  def _encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], np.ndarray]]:
    """Ids (no special tokens) and raw character spans int64 [T, 2] of each text."""
    raise NotImplementedError

  def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> Any:
    raise NotImplementedError

  def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
    raise NotImplementedError

  def save_vocabulary(
    self, save_directory: str | os.PathLike, filename_prefix: str | None = None
  ) -> tuple[str]:
    raise NotImplementedError

  def tokenizer_config(self) -> dict[str, Any]:
    raise NotImplementedError

  # ----------------------------------------------------------------- decoding
  def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = False) -> str:
    """Text of one sequence of ids [seq] (special tokens written literally unless skipped)."""
    if isinstance(ids, np.ndarray) and ids.ndim != 1:
      raise ValueError(f"decode takes one sequence [seq], got an array of shape {ids.shape}")
    if isinstance(ids, (int, np.integer)):
      ids = [int(ids)]
    tokens = self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
    return self.convert_tokens_to_string(tokens)

  def batch_decode(
    self, sequences: Sequence[Sequence[int]] | np.ndarray, skip_special_tokens: bool = False
  ) -> list[str]:
    """Texts of a batch of id sequences ([batch, seq] array or a list of lists)."""
    if isinstance(sequences, np.ndarray) and sequences.ndim != 2:
      raise ValueError(f"batch_decode takes [batch, seq] ids, got an array of {sequences.shape}")
    return [self.decode(s, skip_special_tokens=skip_special_tokens) for s in sequences]

  # ----------------------------------------------------------------- model inputs
  def build_inputs_with_special_tokens(
    self, token_ids_0: Sequence[int], token_ids_1: Sequence[int] | None = None
  ) -> list[int]:
    """`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`."""
    out = [self.cls_token_id, *token_ids_0, self.sep_token_id]
    if token_ids_1 is not None:
      out += [*token_ids_1, self.sep_token_id]
    return out

  def get_special_tokens_mask(
    self,
    token_ids_0: Sequence[int],
    token_ids_1: Sequence[int] | None = None,
    already_has_special_tokens: bool = False,
  ) -> list[int]:
    """1 for special tokens, 0 for sequence tokens, for build_inputs_with_special_tokens' output
    (or for `token_ids_0` itself if it already has them: every special id, unk too, is 1)."""
    if already_has_special_tokens:
      if token_ids_1 is not None:
        raise ValueError("token_ids_1 must be None when the ids already hold special tokens")
      return [1 if int(i) in self.all_special_ids else 0 for i in token_ids_0]
    mask = [1] + [0] * len(token_ids_0) + [1]
    if token_ids_1 is not None:
      mask += [0] * len(token_ids_1) + [1]
    return mask

  def create_token_type_ids_from_sequences(
    self, token_ids_0: Sequence[int], token_ids_1: Sequence[int] | None = None
  ) -> list[int]:
    """Segment ids: 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`."""
    types = [0] * (len(token_ids_0) + 2)
    if token_ids_1 is not None:
      types += [1] * (len(token_ids_1) + 1)
    return types

  @staticmethod
  def _truncate_pair(a: list, b: list, n_remove: int) -> tuple[list, list]:
    # transformers' "longest_first": take from the longer until equal, then split the rest,
    # the extra token (odd count) from the second sequence.
    first = min(abs(len(b) - len(a)), n_remove)
    second = n_remove - first
    if len(a) > len(b):
      ra, rb = first + second // 2, second - second // 2
    else:
      ra, rb = second // 2, first + second - second // 2
    return a[: len(a) - ra], b[: len(b) - rb]

  def _check_call(
    self, text, text_pair, max_length, truncation, padding, return_tensors, stride, overflow
  ) -> None:
    single = isinstance(text, str)
    if not single and not (isinstance(text, Sequence) and all(isinstance(t, str) for t in text)):
      raise TypeError("text must be a str or a list of str")
    if text_pair is not None and (
      single != isinstance(text_pair, str)
      or not single
      and (
        not isinstance(text_pair, Sequence)
        or len(text_pair) != len(text)
        or not all(isinstance(t, str) for t in text_pair)
      )
    ):
      raise ValueError(
        "text_pair must be a str when text is a str, a list of str as long "
        "as text when text is a list"
      )
    if not any(truncation is t or (isinstance(t, str) and truncation == t) for t in _TRUNCATIONS):
      raise ValueError(
        "truncation must be True/'longest_first', 'only_first', 'only_second' or False, "
        f"got {truncation!r}"
      )
    if not any(padding is p or (isinstance(p, str) and padding == p) for p in _PADDINGS):
      raise ValueError(
        f"padding must be one of False, True, 'longest', 'max_length', got {padding!r}"
      )
    if return_tensors not in (None, "np"):
      raise ValueError(f"return_tensors must be None or 'np', got {return_tensors!r}")
    if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < 1):
      raise ValueError(f"max_length must be a positive int, got {max_length!r}")
    if not isinstance(stride, (int, np.integer)) or stride < 0:
      raise ValueError(f"stride must be an int >= 0, got {stride!r}")
    truncate = truncation not in (False, "do_not_truncate")
    if (truncate or padding == "max_length") and max_length is None:
      raise ValueError(
        f"truncation=True and padding='max_length' need max_length (got "
        f"truncation={truncation!r}, padding={padding!r})"
      )
    if truncation == "only_second" and text_pair is None:
      raise ValueError("truncation='only_second' needs text_pair (a second sequence to cut)")
    if overflow and not truncate:
      raise ValueError("return_overflowing_tokens=True needs truncation (and max_length)")
    if overflow and text_pair is not None and truncation not in ("only_first", "only_second"):
      raise ValueError(
        "return_overflowing_tokens with pairs needs truncation='only_first' or 'only_second' "
        "(which sequence is cut into windows)"
      )

  def __call__(
    self,
    text: str | Sequence[str],
    text_pair: str | Sequence[str] | None = None,
    *,
    add_special_tokens: bool = True,
    max_length: int | None = None,
    truncation: bool | str = False,
    padding: bool | str = False,
    return_tensors: str | None = None,
    return_offsets_mapping: bool = False,
    return_overflowing_tokens: bool = False,
    stride: int = 0,
  ) -> BatchEncoding:
    """Encode a text (or pair), or a batch, into `input_ids`, `token_type_ids`, `attention_mask`.

    A str gives flat lists [seq]; a list gives lists of lists [batch][seq]; return_tensors="np"
    gives int32 arrays [batch, seq] (batch 1 for a str). Truncation to `max_length` (special
    tokens included) is transformers': True/"longest_first" cuts the longer of a pair first,
    "only_first"/"only_second" one of them. Padding is on the right with pad_token_id:
    True/"longest" to the longest row, "max_length" to `max_length`.

    return_offsets_mapping: add `offset_mapping`, each token's (start, end) character span in
    its own raw text ([batch, seq, 2] with "np"); special tokens and padding get (0, 0).
    return_overflowing_tokens: instead of dropping what truncation cuts, cut the text (of a pair:
    the sequence truncation names) into windows of the room left, each starting `stride` tokens
    before the previous one ended; every window is a row, and `overflow_to_sample_mapping` [rows]
    gives the input each comes from (the output is a batch even for one str).
    """
    self._check_call(
      text,
      text_pair,
      max_length,
      truncation,
      padding,
      return_tensors,
      stride,
      return_overflowing_tokens,
    )
    single = isinstance(text, str)
    truncate = truncation not in (False, "do_not_truncate")
    n_special = (3 if text_pair is not None else 2) if add_special_tokens else 0
    if truncate and max_length < n_special:
      raise ValueError(f"max_length={max_length} leaves no room for the {n_special} special tokens")

    texts_a = [text] if single else list(text)
    texts_b = None if text_pair is None else ([text_pair] if single else list(text_pair))
    sides_a = self._tokens_with_spans(texts_a, return_offsets_mapping)
    sides_b = (
      [None] * len(sides_a)
      if texts_b is None
      else self._tokens_with_spans(texts_b, return_offsets_mapping)
    )
    input_ids, token_type_ids, offsets, owners = [], [], [], []
    for index, (a, b) in enumerate(zip(sides_a, sides_b)):
      for a_part, b_part in self._truncations(
        a, b, n_special, max_length, truncation, return_overflowing_tokens, stride
      ):
        ids, types, spans = self._row(a_part, b_part, add_special_tokens, return_offsets_mapping)
        input_ids.append(ids)
        token_type_ids.append(types)
        offsets.append(spans)
        owners.append(index)
    return self._pack(
      input_ids,
      token_type_ids,
      offsets if return_offsets_mapping else None,
      owners if return_overflowing_tokens else None,
      single and not return_overflowing_tokens,
      max_length,
      padding,
      return_tensors,
    )

  def _tokens_with_spans(self, texts: list[str], with_offsets: bool) -> list[list[tuple]]:
    """Each text as a list of (id, (start, end) or None), so that truncation keeps ids and spans
    together."""
    if not with_offsets:
      return [[(t, None) for t in ids] for ids in self.encode_as_ids(texts)]
    return [list(zip(ids, spans.tolist())) for ids, spans in self._encode_with_offsets(texts)]

  def _row(
    self, a: list[tuple], b: list[tuple] | None, add_special_tokens: bool, with_offsets: bool
  ) -> tuple:
    """(input_ids, token_type_ids, spans or []) of one row from its (id, span) sides."""
    ids_a = [t for t, _ in a]
    ids_b = None if b is None else [t for t, _ in b]
    spans_a = [tuple(s) for _, s in a] if with_offsets else []
    spans_b = [tuple(s) for _, s in b or ()] if with_offsets else []
    if not add_special_tokens:  # transformers gives type 0 to both sequences then
      ids = ids_a + (ids_b or [])
      return ids, [0] * len(ids), spans_a + spans_b
    spans = [_NO_SPAN, *spans_a, _NO_SPAN]
    if b is not None:
      spans += [*spans_b, _NO_SPAN]
    return (
      self.build_inputs_with_special_tokens(ids_a, ids_b),
      self.create_token_type_ids_from_sequences(ids_a, ids_b),
      spans,
    )

  def _truncations(self, a, b, n_special, max_length, truncation, overflow, stride):
    """The (a, b) rows one input gives: itself, truncated, or its overflow windows."""
    truncate = truncation not in (False, "do_not_truncate")
    excess = len(a) + len(b or ()) + n_special - (max_length or 0)
    if not truncate or excess <= 0:
      return [(a, b)]
    if truncation in (True, "longest_first"):
      if b is None:
        cut = a[: len(a) - excess]
        if not overflow:
          return [(cut, None)]
        return [(a[i:j], None) for i, j in self._overflow_windows(len(a), len(cut), stride)]
      return [self._truncate_pair(a, b, excess)]
    second = truncation == "only_second"
    cut, other = (b, a) if second else (a, b)
    room = len(cut) - excess
    if room < 1:
      raise ValueError(
        f"truncation={truncation!r}: the other sequence ({len(other or ())} tokens) and the "
        f"special tokens already fill max_length={max_length}"
      )
    windows = self._overflow_windows(len(cut), room, stride) if overflow else [(0, room)]
    return [(other, cut[i:j]) if second else (cut[i:j], other) for i, j in windows]

  @staticmethod
  def _overflow_windows(length: int, room: int, stride: int) -> list[tuple[int, int]]:
    if stride >= room:
      raise ValueError(
        f"stride={stride} must be smaller than the {room} tokens a window holds "
        "(max_length minus the special tokens and the other sequence)"
      )
    return _windows(length, room, stride)

  def _pack(
    self,
    input_ids: list[list[int]],
    token_type_ids: list[list[int]],
    offsets: list[list[tuple[int, int]]] | None,
    owners: list[int] | None,
    single: bool,
    max_length: int | None,
    padding: bool | str,
    return_tensors: str | None,
  ) -> BatchEncoding:
    longest = max(map(len, input_ids), default=0)
    target = (
      max_length if padding == "max_length" else longest if padding in (True, "longest") else None
    )
    if return_tensors == "np":
      if padding == "max_length" and longest > max_length:
        raise ValueError(
          f"a sequence has {longest} tokens, more than max_length={max_length}, "
          "and truncation is off: pass truncation=True to cut it"
        )
      if target is None and any(len(r) != longest for r in input_ids):
        raise ValueError(
          "sequences have different lengths: pass padding=True (or 'max_length') to return arrays"
        )
      # One vectorized scatter: the row-major True cells of `valid` take the concatenated rows.
      lengths = np.fromiter(map(len, input_ids), np.int64, len(input_ids))
      valid = np.arange(longest if target is None else target) < lengths[:, None]
      total = int(lengths.sum())
      out = {
        "input_ids": np.full(valid.shape, self.pad_token_id, np.int32),
        "token_type_ids": np.zeros(valid.shape, np.int32),
        "attention_mask": valid.astype(np.int32),
      }
      flat = itertools.chain.from_iterable
      out["input_ids"][valid] = np.fromiter(flat(input_ids), np.int32, total)
      out["token_type_ids"][valid] = np.fromiter(flat(token_type_ids), np.int32, total)
      if offsets is not None:
        out["offset_mapping"] = np.zeros((*valid.shape, 2), np.int32)
        out["offset_mapping"][valid] = np.array(list(flat(offsets)), np.int32).reshape(-1, 2)
      if owners is not None:
        out["overflow_to_sample_mapping"] = np.asarray(owners, np.int32)
      return BatchEncoding(out)

    # Lists: rows longer than `target` (no truncation) stay whole, as in transformers.
    fills = [max(0, (target or 0) - len(r)) for r in input_ids]
    out = {
      "input_ids": [r + [self.pad_token_id] * f for r, f in zip(input_ids, fills)],
      "token_type_ids": [r + [0] * f for r, f in zip(token_type_ids, fills)],
      "attention_mask": [[1] * len(r) + [0] * f for r, f in zip(input_ids, fills)],
    }
    if offsets is not None:
      out["offset_mapping"] = [r + [_NO_SPAN] * f for r, f in zip(offsets, fills)]
    if single:
      out = {k: v[0] for k, v in out.items()}
    if owners is not None:
      out["overflow_to_sample_mapping"] = owners
    return BatchEncoding(out)
