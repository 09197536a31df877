"""The README's figures and links are checked against the code, so they cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import albert_flax as af
from albert_flax import sharding

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _count(model_cls, config: af.AlbertConfig) -> int:
  shapes = jax.eval_shape(
    lambda: model_cls(config).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  )
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(sharding.unbox(shapes["params"])))


def _preset_rows() -> dict[str, list[str]]:
  rows = {}
  for line in README.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 9 and cells[0].startswith("`"):
      for name in re.findall(r"`([\w-]+)`", cells[0]):
        rows[name] = cells[1:]
  return rows


def test_readme_lists_every_preset():
  assert sorted(_preset_rows()) == af.AlbertConfig.preset_names()


@pytest.mark.parametrize("name", af.AlbertConfig.preset_names())
def test_readme_preset_row_matches_the_model(name):
  cfg = af.AlbertConfig.preset(name)
  row = _preset_rows()[name]
  expected = [
    cfg.num_hidden_layers,
    cfg.hidden_size,
    cfg.embedding_size,
    cfg.num_attention_heads,
    cfg.intermediate_size,
    cfg.vocab_size,
  ]
  assert [int(c) for c in row[:6]] == expected
  backbone = _count(af.AlbertModel, cfg)
  pretraining = _count(af.AlbertForPreTraining, cfg)
  assert [int(c.replace(",", "")) for c in row[6:]] == [backbone, pretraining]
  if name == "base-v2":
    assert backbone == 11_683_584  # the released albert-base-v2, as transformers counts it


def test_relative_links_exist():
  for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
    for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text(encoding="utf-8")):
      assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
