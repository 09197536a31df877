"""The compiled bf16 training step keeps its scanned layer loops free of float32 GEMMs and of
weight-sized conversions (issue 15).

The step is the library's (`albert_flax.train.training.make_train_step` with
`losses.pretraining_stats_fn`, LAMB), compiled ahead of time from shapes for a tiny model; the
checks read XLA's compiled HLO text. The loops are the `while` instructions the encoder's
`nn.scan` becomes (forward and backward); everything they run is their body computation and the
computations it calls (fusions, YNNPACK GEMM fusions, nested calls).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

import albert_flax as af
from albert_flax import sharding
from albert_flax.train import losses, optim, training

# batch * seq = 36 rows: no activation has the element count of a kernel ([H, H], [H, I]).
BATCH, SEQ, PREDICTIONS = 3, 12, 4

_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) .*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$")
_OPCODE = re.compile(r"\s*([a-z][\w\-]*)\((.*)$")
_CALLED = re.compile(r"\b(?:calls|to_apply|body|condition)=%([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_ARRAY = re.compile(r"^([a-z0-9]+)\[([\d,]*)\]")


def _split_type(text: str) -> tuple[str, str]:
  """'(f32[2], s32[]) while(...' or 'f32[2]{0} add(...' -> (type, the rest)."""
  if not text.startswith("("):
    head, _, tail = text.partition(" ")
    return head, tail
  depth = 0
  for i, char in enumerate(text):
    depth += {"(": 1, ")": -1}.get(char, 0)
    if depth == 0:
      return text[: i + 1], text[i + 1 :]
  return text, ""


def _split_operands(text: str) -> tuple[str, str]:
  """'a, b), attrs' (after the opcode's parenthesis) -> ('a, b', attrs)."""
  depth = 1
  for i, char in enumerate(text):
    depth += {"(": 1, ")": -1}.get(char, 0)
    if depth == 0:
      return text[:i], text[i + 1 :]
  return text, ""


def parse_hlo(text: str) -> tuple[dict, dict]:
  """Compiled HLO text -> ({computation: [instruction]}, {instruction name: (dtype, dims)}).

  An instruction is a dict: name, opcode, operand names, called computations, op_name.
  """
  computations: dict[str, list[dict]] = {}
  types: dict[str, tuple[str, tuple[int, ...]]] = {}
  current = None
  for line in text.splitlines():
    match = _COMPUTATION.match(line)
    if match:
      current = computations.setdefault(match.group(1), [])
      continue
    match = _INSTRUCTION.match(line)
    if not match or current is None:
      continue
    name, rest = match.groups()
    shape, rest = _split_type(rest)
    match = _OPCODE.match(rest)
    if not match:
      continue
    opcode, rest = match.groups()
    operands, rest = _split_operands(rest)
    array = _ARRAY.match(shape)
    if array:
      dims = tuple(int(d) for d in array.group(2).split(",") if d)
      types[name] = (array.group(1), dims)
    called = _CALLED.findall(rest)
    for branches in _BRANCHES.findall(rest):
      called += [b.strip().lstrip("%") for b in branches.split(",")]
    op_name = re.search(r'op_name="([^"]*)"', rest)
    current.append(
      {
        "name": name,
        "opcode": opcode,
        "operands": re.findall(r"%([\w.\-]+)", operands),
        "called": called,
        "op_name": op_name.group(1) if op_name else "",
        "text": line,
      }
    )
  return computations, types


def encoder_loop_bodies(computations: dict) -> list[str]:
  """Body computations of the encoder scan's while loops (op_name ".../albert/encoder/while")."""
  bodies = []
  for instructions in computations.values():
    for inst in instructions:
      if inst["opcode"] == "while" and "/encoder/while" in inst["op_name"]:
        bodies.append(re.search(r"body=%([\w.\-]+)", inst["text"]).group(1))
  return bodies


def reachable(computations: dict, root: str) -> list[dict]:
  """Every instruction of `root` and of the computations it calls, transitively."""
  seen, stack, out = set(), [root], []
  while stack:
    name = stack.pop()
    if name in seen or name not in computations:
      continue
    seen.add(name)
    for inst in computations[name]:
      out.append(inst)
      stack.extend(inst["called"])
  return out


def _elements(dims: tuple[int, ...]) -> int:
  count = 1
  for d in dims:
    count *= d
  return count


def loop_findings(text: str, kernel_sizes: set[int]) -> dict[str, list[str]]:
  """In the encoder loops of compiled HLO `text`: GEMMs (dot, convolution, GEMM custom-calls)
  with a float32 operand, and converts whose operand or result has a kernel's element count."""
  computations, types = parse_hlo(text)
  bodies = encoder_loop_bodies(computations)
  assert len(bodies) == 2, f"expected the forward and backward encoder loops, found {bodies}"
  found: dict[str, list[str]] = {"f32 gemms": [], "weight converts": [], "gemms": []}
  for body in bodies:
    for inst in reachable(computations, body):
      opcode = inst["opcode"]
      operand_types = [types[o] for o in inst["operands"] if o in types]
      gemm = opcode in ("dot", "convolution") or (
        opcode == "custom-call" and re.search(r"matmul|gemm|dot", inst["text"], re.I)
      )
      if gemm:
        found["gemms"].append(inst["name"])
        if any(dtype == "f32" for dtype, _ in operand_types):
          found["f32 gemms"].append(f"{body}: {inst['name']} {inst['op_name'][-70:]}")
      if opcode == "convert":
        sizes = {_elements(dims) for _, dims in operand_types}
        sizes.add(_elements(types.get(inst["name"], ("", ()))[1]))
        if sizes & kernel_sizes:
          found["weight converts"].append(f"{body}: {inst['name']} {inst['op_name'][-70:]}")
  return found


def compiled_train_step_hlo(config: af.AlbertConfig) -> str:
  """The compiled HLO text of the library's pretraining step (LAMB) for `config`."""
  model = af.AlbertForPreTraining(config)
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  optimizer, _ = optim.create_optimizer("lamb", 1e-3, 100, 10, weight_decay=0.01)
  shapes, shardings = training.abstract_train_state(
    lambda rng: model.init(rng, jnp.zeros((1, SEQ), jnp.int32))["params"],
    optimizer,
    mesh,
    jax.random.key(0),
  )
  state = training.abstract_with_shardings(shapes, shardings)
  ints = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)  # noqa: E731
  batch = {
    "input_ids": ints(BATCH, SEQ),
    "attention_mask": ints(BATCH, SEQ),
    "token_type_ids": ints(BATCH, SEQ),
    "masked_lm_positions": ints(BATCH, PREDICTIONS),
    "masked_lm_ids": ints(BATCH, PREDICTIONS),
    "masked_lm_weights": jax.ShapeDtypeStruct((BATCH, PREDICTIONS), jnp.float32),
    "sentence_order_label": ints(BATCH),
  }
  step = training.make_train_step(
    losses.pretraining_stats_fn(model), losses.pretraining_loss_weights, optimizer, shardings, mesh
  )
  return step.lower(state, batch).compile().as_text()


@pytest.mark.parametrize("remat", ["none", "dots"])
def test_bf16_step_loops_have_no_float32_gemms_or_weight_converts(remat):
  config = af.AlbertConfig.preset("tiny", dtype="bfloat16", num_hidden_layers=3, remat=remat)
  hidden, inner = config.hidden_size, config.intermediate_size
  assert BATCH * SEQ not in (hidden, inner)
  found = loop_findings(compiled_train_step_hlo(config), {hidden * hidden, hidden * inner})
  # The layer's GEMMs are there (6 projections and 2 attention products forward, twice as many
  # backward), so an empty result means bf16 GEMMs, not a parser that found nothing.
  assert len(found["gemms"]) >= 8 * 3, found["gemms"]
  problems = [f"float32 GEMM in the scanned layer: {line}" for line in found["f32 gemms"]]
  problems += [
    f"weight-sized convert in the scanned layer: {line}" for line in found["weight converts"]
  ]
  assert not problems, "\n".join(problems)
