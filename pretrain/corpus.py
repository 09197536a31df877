"""Document sources for pretraining: text files, TensorFlow Datasets, and the built-in corpus.

A document is a list of sentences (str). Every source streams the documents of one process's share
in a fixed order for a given (seed, epoch) and restarts from a small JSON-serializable position
(`Position`, a dict of ints), which is what lets the pipeline save and restore its place cheaply.

Sources:
- `TextFileSource`: the original BERT/ALBERT format, one sentence per line, a blank line between
  documents; positions are (file, byte offset), so a restart seeks instead of re-reading.
- `TfdsSource`: any text data set of tensorflow-datasets by name and split; each record's text
  field is split into sentences with `text_to_sentences`.
- `builtin_corpus_path()`: the docstrings and documentation of the installed Python standard
  library (see `pretrain/builtin_corpus.py`), written once as a text file in a cache directory and
  then read as a `TextFileSource`.
"""

from __future__ import annotations

import abc
import glob
import logging
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from etils import epath

Position = dict[str, int]
Document = list[str]

# Held-out documents for `split="eval"`: the rule is on the document's content (a hash of its first
# sentence), so it does not depend on file order, sharding or the number of processes.
DEFAULT_EVAL_FRACTION = 0.02
SPLITS = (None, "all", "train", "eval")


# ----------------------------------------------------------------------------- sentence splitting

# A sentence ends at . ! or ? (optionally followed by closing quotes/brackets), then whitespace,
# then something that can start a sentence.
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
# Words after which a period does not end a sentence.
_ABBREVIATIONS = frozenset(
  "e.g i.e etc vs cf al mr mrs ms dr prof st no fig figs eq approx jr sr inc ltd co".split()
)
_PARAGRAPH = re.compile(r"\n\s*\n")
_SPACE = re.compile(r"\s+")
_HAS_WORD = re.compile(r"\w")

log = logging.getLogger(__name__)


def split_sentences(paragraph: str) -> list[str]:
  """Splits one paragraph (whitespace already collapsed) into sentences with a regular rule.

  A boundary is sentence-final punctuation then whitespace then an upper-case letter, digit or
  opening quote; periods after common abbreviations and single-letter initials do not count.
  """
  sentences = []
  start = 0
  for m in _BOUNDARY.finditer(paragraph):
    if paragraph[m.start()] == ".":
      # The word before the period (a short look-back: abbreviations are short).
      before = paragraph[max(start, m.start() - 16) : m.start()].split()
      word = before[-1].lstrip("\"'([").lower() if before else ""
      if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        continue
    end = m.start() + len(m.group().rstrip())
    sentences.append(paragraph[start:end])
    start = m.end()
  sentences.append(paragraph[start:])
  return [s for s in (s.strip() for s in sentences) if _HAS_WORD.search(s)]


def text_to_sentences(text: str, paragraph_per_line: bool = False) -> list[str]:
  """Splits free text into sentences: paragraphs (blank lines, or every line), then sentences.

  Args:
    text: the text of one document.
    paragraph_per_line: treat every line as its own paragraph (e.g. Wikipedia dumps, where a line
      is a paragraph or a heading); otherwise lines of a paragraph are joined (docstrings).
  """
  paragraphs = text.splitlines() if paragraph_per_line else _PARAGRAPH.split(text)
  out: list[str] = []
  for p in paragraphs:
    p = _SPACE.sub(" ", p).strip()
    if p:
      out.extend(split_sentences(p))
  return out


# ----------------------------------------------------------------------------- splits and shares


def in_eval_split(
  first_sentence: str | bytes, eval_fraction: float = DEFAULT_EVAL_FRACTION
) -> bool:
  """Whether a document (identified by its first sentence) is held out for evaluation."""
  if isinstance(first_sentence, str):
    first_sentence = first_sentence.encode("utf-8")
  return zlib.crc32(first_sentence) < eval_fraction * 2**32


def check_split(split: str | None) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def select_split(
  docs: Iterable[tuple[Document, Position]],
  split: str | None,
  eval_fraction: float = DEFAULT_EVAL_FRACTION,
) -> Iterator[tuple[Document, Position]]:
  """Keeps the documents of `split` ("train", "eval"; None/"all" keeps all), positions unchanged."""
  check_split(split)
  for doc, pos in docs:
    if split in (None, "all") or in_eval_split(doc[0], eval_fraction) == (split == "eval"):
      yield doc, pos


def _check_share(process_index: int, process_count: int) -> None:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
      f"need 0 <= process_index < process_count, got process_index={process_index}, "
      f"process_count={process_count}"
    )


# ----------------------------------------------------------------------------- sources


class DocumentSource(abc.ABC):
  """A stream of documents; subclasses read one process's share from a restartable position."""

  name: str

  @abc.abstractmethod
  def documents(
    self, epoch: int, start: Position | None, process_index: int, process_count: int, seed: int = 0
  ) -> Iterator[tuple[Document, Position]]:
    """Yields (document, position after it) for this process's share of epoch `epoch`.

    `start` is a position yielded earlier for the same (epoch, share, seed), or None for the
    beginning of the epoch. Every document has at least one sentence.
    """


def expand_files(files: str | Sequence[str]) -> list[str]:
  """Expands globs (a list, or one string of comma-separated globs as in the original's flags).

  Paths and globs may be local or URLs of the path library (`gs://bucket/corpus/*.txt`): one
  listing of the folder above the first wildcard, not a download.

  Raises:
    FileNotFoundError: naming a pattern that matches no file.
  """
  patterns = [p for p in files.split(",")] if isinstance(files, str) else list(files)
  out: list[str] = []
  for pattern in patterns:
    pattern = str(pattern).strip()
    if not pattern:
      continue
    matched = [str(m) for m in _glob(epath.Path(pattern).expanduser()) if not m.is_dir()]
    if not matched:
      folder = epath.Path(pattern).expanduser()
      hint = (
        f" (a folder: give its files, e.g. {pattern.rstrip('/')}/*.txt)" if folder.is_dir() else ""
      )
      raise FileNotFoundError(f"no input file matches {pattern!r}{hint}")
    out.extend(matched)
  if not out:
    raise ValueError(f"no input files given: {files!r}")
  return out


def _glob(pattern: epath.Path) -> list[epath.Path]:
  """The paths matching `pattern` (wildcards in any component but `**`), sorted; the path itself
  when it has no wildcard and exists."""
  parts = pattern.parts
  first = next((i for i, part in enumerate(parts) if glob.has_magic(part)), None)
  if first is None:
    return [pattern] if pattern.exists() else []
  if "**" in parts[first:]:
    raise ValueError(f"{pattern}: '**' (recursive) globs are not supported; use '*' per level")
  if first == 0:  # "part-*.txt": relative, so local (a URL starts with its scheme)
    return [epath.Path(m) for m in sorted(glob.glob(str(pattern)))]
  # epath globs relative to a folder: the folder above the first wildcard, then the rest.
  return sorted(epath.Path(*parts[:first]).glob("/".join(parts[first:])), key=str)


def _usable_files(files: list[str]) -> list[str]:
  """`files` without the empty ones (one warning gives their count: a real corpus of hundreds
  of files often has a few); an error when none is left, or when a file is not text."""
  usable, empty = [], []
  for path in files:
    file = epath.Path(path)
    try:
      size = file.stat().length
      with file.open("rb") as f:
        head = f.read(_TEXT_PROBE_BYTES)
    except PermissionError as e:
      raise PermissionError(f"input file {path!r} is not readable: {e}") from e
    except OSError as e:  # missing, a folder, or a failed read
      raise FileNotFoundError(f"input {path!r} is not a readable file: {e}") from e
    if size == 0:
      empty.append(path)
      continue
    # Binary files and zeroed blocks (a crash mid-copy) are full of NUL bytes; text holds none, or
    # a stray control character now and then (which the tokenizers' text cleanup drops).
    if head.count(b"\0") * 100 >= max(len(head), 1) and b"\0" in head:
      raise ValueError(
        f"input file {path!r} is not text: it holds NUL bytes (a binary or zeroed file?)"
      )
    usable.append(path)
  if not usable:
    raise ValueError(
      f"all {len(files)} input file(s) are empty: {', '.join(files[:5])}"
      + (" ..." if len(files) > 5 else "")
    )
  if empty:
    log.warning(
      "skipping %d empty input file(s) of %d (first: %s)", len(empty), len(files), empty[0]
    )
  return usable


_TEXT_PROBE_BYTES = 1 << 16


class TextFileSource(DocumentSource):
  """Text files in the original format: one sentence per line, a blank line between documents.

  Shares: with at least as many files as processes (and `shard_by` "auto" or "file") each process
  reads files i with i % process_count == process_index; otherwise every process reads all files
  and keeps documents d with d % process_count == process_index (d counts documents in the
  epoch's order). The file order is shuffled each epoch by (seed, epoch).
  Position: {"file": index in the epoch's order, "offset": byte offset, "doc": documents seen}.
  """

  def __init__(self, files: str | Sequence[str], shard_by: str = "auto", name: str | None = None):
    if shard_by not in ("auto", "file", "document"):
      raise ValueError(f"shard_by must be 'auto', 'file' or 'document', got {shard_by!r}")
    self.files = _usable_files(expand_files(files))
    self.shard_by = shard_by
    self.name = name or (
      self.files[0] if len(self.files) == 1 else f"{len(self.files)} files ({self.files[0]}, ...)"
    )

  def _by_file(self, process_count: int) -> bool:
    return self.shard_by == "file" or (self.shard_by == "auto" and len(self.files) >= process_count)

  def _epoch_files(
    self, epoch: int, process_index: int, process_count: int, seed: int
  ) -> list[str]:
    files = self.files
    if process_count > 1 and self._by_file(process_count):
      files = files[process_index::process_count]
    if len(files) > 1:
      order = np.random.default_rng([seed, epoch, 0x5F11E5]).permutation(len(files))
      files = [files[i] for i in order]
    return files

  def documents(
    self, epoch: int, start: Position | None, process_index: int, process_count: int, seed: int = 0
  ) -> Iterator[tuple[Document, Position]]:
    _check_share(process_index, process_count)
    files = self._epoch_files(epoch, process_index, process_count, seed)
    by_doc = process_count > 1 and not self._by_file(process_count)
    start = start or {"file": 0, "offset": 0, "doc": 0}
    doc_index = start["doc"]
    for file_index in range(start["file"], len(files)):
      path = files[file_index]
      offset = start["offset"] if file_index == start["file"] else 0
      try:  # A stream (local file, or ranged reads of a bucket's object): seek, then read on.
        f = epath.Path(path).open("rb")
      except OSError as e:
        raise OSError(f"cannot read input file {path!r}: {e}") from e
      with f:
        f.seek(offset)
        lines: list[bytes] = []
        line_offset = offset
        # A None line at the end closes the last document of the file.
        for line in _lines_then_none(f):
          if line is not None:
            line_offset += len(line)
            line = line.strip()
            if line:
              lines.append(line)
              continue
          if lines:
            mine = not by_doc or doc_index % process_count == process_index
            doc_index += 1
            if mine:
              pos = (
                {"file": file_index, "offset": line_offset, "doc": doc_index}
                if line is not None
                else {"file": file_index + 1, "offset": 0, "doc": doc_index}
              )
              yield _decode(lines, path, line_offset), pos
            lines = []


def _lines_then_none(f) -> Iterator[bytes | None]:
  yield from f
  yield None


def _decode(lines: list[bytes], path: str, offset: int) -> Document:
  try:
    return [line.decode("utf-8") for line in lines]
  except UnicodeDecodeError as e:
    raise ValueError(
      f"input file {path!r} is not UTF-8 text (document ending near byte {offset}): {e}"
    ) from e


class TfdsSource(DocumentSource):
  """A text data set of tensorflow-datasets, e.g. name="wikipedia/20230601.en", field "text".

  The data set must be prepared in `data_dir` (`tfds.builder(name).download_and_prepare()`, or pass
  `download=True`). Records are read in order with `as_data_source` (random access, ArrayRecord
  data sets) or else `as_dataset`; record r belongs to process r % process_count. Each record's
  text is split into sentences (`text_to_sentences`, a paragraph per line).
  Position: {"record": index of the next record}.
  """

  def __init__(
    self,
    name: str,
    split: str = "train",
    data_dir: str | None = None,
    field: str = "text",
    download: bool = False,
  ):
    import tensorflow_datasets as tfds  # Heavy (imports TensorFlow): only when asked for.

    self._tfds = tfds
    self.name = f"tfds:{name}[{split}]"
    try:
      self.builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises several types for unknown names/configs.
      raise ValueError(f"unknown tensorflow-datasets data set {name!r}: {e}") from e
    if not self.builder.is_prepared():
      if not download:
        raise FileNotFoundError(
          f"tensorflow-datasets data set {name!r} is not prepared in {self.builder.data_dir!r}: "
          "run tfds.builder(name).download_and_prepare() first, or pass tfds_download=True"
        )
      self.builder.download_and_prepare()
    features = self.builder.info.features
    if field not in features:
      raise ValueError(f"{self.name} has no field {field!r}; its fields: {list(features.keys())}")
    self.split, self.field = split, field
    try:
      self.num_records = self.builder.info.splits[split].num_examples
    except (KeyError, ValueError) as e:
      raise ValueError(
        f"{self.name}: no split {split!r}; splits: {list(self.builder.info.splits.keys())}"
      ) from e
    if self.num_records == 0:
      raise ValueError(f"{self.name} is empty")
    self.random_access = self.builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD

  def _texts(
    self, start: int, process_index: int, process_count: int
  ) -> Iterator[tuple[int, bytes | str]]:
    if self.random_access:
      source = self.builder.as_data_source(split=self.split)
      first = start + (process_index - start) % process_count
      for r in range(first, len(source), process_count):
        yield r, source[r][self.field]
    else:
      # No auto-cache: the stream is often left unfinished (a window at a time, or a restart).
      ds = self.builder.as_dataset(
        split=self.split,
        shuffle_files=False,
        read_config=self._tfds.ReadConfig(try_autocache=False),
      )
      ds = ds.map(lambda ex: ex[self.field]).skip(start)
      for r, text in enumerate(self._tfds.as_numpy(ds), start):
        if r % process_count == process_index:
          yield r, text

  def documents(
    self, epoch: int, start: Position | None, process_index: int, process_count: int, seed: int = 0
  ) -> Iterator[tuple[Document, Position]]:
    del epoch, seed  # The record order is the data set's, every epoch.
    _check_share(process_index, process_count)
    for r, text in self._texts((start or {"record": 0})["record"], process_index, process_count):
      if isinstance(text, bytes):
        text = text.decode("utf-8")
      sentences = text_to_sentences(text, paragraph_per_line=True)
      if sentences:
        yield sentences, {"record": r + 1}
