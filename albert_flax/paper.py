"""The ALBERT paper's parameter figures for its ablations, beside this package's own counts.

Lan et al., "ALBERT: A Lite BERT for Self-supervised Learning of Language Representations"
(arXiv:1909.11942), Tables 3 and 4 study ALBERT-base (L=12, H=768, A=12, I=3072, V=30000) with
embedding sizes E in {64, 128, 256, 768} and four cross-layer sharing strategies
(`AlbertConfig.cross_layer_sharing`). `PAPER_PARAMETERS` holds the paper's "Parameters" column
(millions, as printed); `parameter_rows` computes ours for the same configurations with
`jax.eval_shape` (nothing is allocated), so a table of results can print both.

Ours counts the backbone, `AlbertModel` (embeddings, E->H projection, encoder, pooler), the
convention of the paper's model-size figures (ALBERT-base "12M": 11.7M here); the pretraining
heads add 0.13M (E=128) to 0.62M (E=768). The paper rounds loosely: its not-shared E=768 model is
BERT-base's "108M", which has no E->H projection (0.59M here) and is 109.7M counted this way.

    python -m albert_flax.paper          # the table, markdown
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from albert_flax.config import AlbertConfig
from albert_flax.modeling import AlbertModule

# (table, embedding size E, cross_layer_sharing) -> the paper's parameter count, millions.
PAPER_PARAMETERS: dict[tuple[int, int, str], int] = {
  # Table 3: the effect of E, not shared (BERT-style) and all shared (ALBERT-style).
  (3, 64, "none"): 87,
  (3, 128, "none"): 89,
  (3, 256, "none"): 93,
  (3, 768, "none"): 108,
  (3, 64, "all"): 10,
  (3, 128, "all"): 12,
  (3, 256, "all"): 16,
  (3, 768, "all"): 31,
  # Table 4: the sharing strategies at E=768 and E=128.
  (4, 768, "all"): 31,
  (4, 768, "attention"): 83,
  (4, 768, "ffn"): 57,
  (4, 768, "none"): 108,
  (4, 128, "all"): 12,
  (4, 128, "attention"): 64,
  (4, 128, "ffn"): 38,
  (4, 128, "none"): 89,
}
# The paper's names of the strategies (its row labels).
PAPER_NAMES = {
  "all": "all-shared",
  "attention": "shared-attention",
  "ffn": "shared-FFN",
  "none": "not-shared",
}


@dataclasses.dataclass(frozen=True)
class ParameterRow:
  """One configuration of Table 3 or 4: ours (exact) and the paper's (millions, as printed)."""

  table: int
  embedding_size: int
  cross_layer_sharing: str
  ours: int
  paper_millions: int


def paper_config(embedding_size: int, cross_layer_sharing: str) -> AlbertConfig:
  """ALBERT-base with embedding size E and a sharing strategy: a configuration of Tables 3/4."""
  return AlbertConfig.preset(
    "base-v2", embedding_size=embedding_size, cross_layer_sharing=cross_layer_sharing
  )


@functools.lru_cache(maxsize=64)
def backbone_parameter_count(config: AlbertConfig) -> int:
  """Parameters of `AlbertModel(config)` (with pooler), from shapes alone (`jax.eval_shape`)."""
  shapes = jax.eval_shape(
    AlbertModule(config).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32)
  )
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.meta.unbox(shapes["params"])))


def parameter_rows(tables: tuple[int, ...] = (3, 4)) -> list[ParameterRow]:
  """Every configuration of the given tables, in the paper's order, with both counts."""
  return [
    ParameterRow(table, e, sharing, backbone_parameter_count(paper_config(e, sharing)), millions)
    for (table, e, sharing), millions in PAPER_PARAMETERS.items()
    if table in tables
  ]


def format_parameter_table(rows: list[ParameterRow]) -> str:
  """Markdown: table, E, strategy, ours (millions, one decimal), the paper's, the difference."""
  lines = [
    "| table | E | sharing | ours | paper | ours - paper |",
    "|---|---|---|---|---|---|",
  ]
  for r in rows:
    ours = r.ours / 1e6
    lines.append(
      f"| {r.table} | {r.embedding_size} | {PAPER_NAMES[r.cross_layer_sharing]} | "
      f"{ours:.1f}M | {r.paper_millions}M | {ours - r.paper_millions:+.1f}M |"
    )
  return "\n".join(lines)


if __name__ == "__main__":
  print(format_parameter_table(parameter_rows()))
