"""Bytes an ONNX model stores as tensors (the export tests' size checks)."""

from __future__ import annotations


def tensor_bytes(graph) -> int:
  """Bytes of every stored tensor: initializers and constants, in subgraphs (Loop bodies) too."""
  total = sum(len(t.raw_data) or 4 * len(t.float_data) for t in graph.initializer)
  for node in graph.node:
    for attribute in node.attribute:
      if attribute.HasField("g"):
        total += tensor_bytes(attribute.g)
      if attribute.HasField("t"):
        total += len(attribute.t.raw_data)
  return total
