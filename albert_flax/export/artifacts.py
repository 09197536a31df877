"""What lies beside an exported model: its tokenizer, config, a manifest and a README.

<out_dir>/
  model.stablehlo | model.onnx | saved_model/ | model.tflite   the artifact (converters.py)
  spiece.model or vocab.txt, tokenizer_config.json            the tokenizer (when known)
  config.json                                                 the model's config
  export.json                                                 MANIFEST_FILE: inputs, outputs
  README.md                                                   how to call it without albert_flax
"""

from __future__ import annotations

import json
import os
from typing import Any

from albert_flax.export import converters, serving

MANIFEST_FILE = "export.json"
README_FILE = "README.md"
CONFIG_FILE = "config.json"

# How to call each artifact from Python with its runtime only ({inputs} = the three int32 arrays).
_CALLS = {
  "stablehlo": """\
import jax  # jax >= the exporting version; CPU, CUDA or TPU
exported = jax.export.deserialize(open("model.stablehlo", "rb").read())
outputs = exported.call(input_ids, attention_mask, token_type_ids)  # a dict, see below""",
  "onnx": """\
import onnxruntime  # pip install onnxruntime
session = onnxruntime.InferenceSession("model.onnx")
outputs = session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask,
                             "token_type_ids": token_type_ids})  # a list: the Outputs above""",
  "saved_model": """\
import tensorflow as tf
serve = tf.saved_model.load("saved_model").signatures["serving_default"]
outputs = serve(input_ids=tf.constant(input_ids), attention_mask=tf.constant(attention_mask),
                token_type_ids=tf.constant(token_type_ids))  # a dict of tf.Tensor""",
  "litert": """\
from ai_edge_litert.interpreter import Interpreter  # pip install ai-edge-litert
runner = Interpreter(model_path="model.tflite").get_signature_runner()
outputs = runner(input_ids=input_ids, attention_mask=attention_mask,
                 token_type_ids=token_type_ids)  # a dict; any batch and length""",
}


def write_beside(
  out_dir: str,
  fmt: str,
  model: Any,
  max_seq_length: int | None,
  quantized: bool,
  tokenizer: Any = None,
) -> None:
  """Write the tokenizer (if given), config.json, export.json and README.md into `out_dir`."""
  name = serving.model_class_name(model)
  config = model.config
  longest = max_seq_length or config.max_position_embeddings
  axes = serving.input_axes(model)
  outputs = serving.OUTPUT_NAMES[name]
  if tokenizer is not None:
    tokenizer.save_pretrained(out_dir)
  config.to_json_file(os.path.join(out_dir, CONFIG_FILE), architecture=name)
  manifest = {
    "format": fmt,
    "artifact": converters.ARTIFACT[fmt],
    "model_class": name,
    "inputs": {n: {"dtype": "int32", "axes": list(axes)} for n in serving.INPUT_NAMES},
    "outputs": list(outputs),
    "max_seq_length": longest,
    "int8_weights": quantized,
  }
  with open(os.path.join(out_dir, MANIFEST_FILE), "w") as f:
    json.dump(manifest, f, indent=2)
  with open(os.path.join(out_dir, README_FILE), "w") as f:
    f.write(_readme(fmt, name, axes, outputs, longest, quantized, tokenizer))


def _tokenizer_lines(tokenizer: Any) -> str:
  if tokenizer is None:
    return "No tokenizer was exported with this model: use the one it was trained with.\n"
  if os.path.basename(tokenizer.vocab_file).endswith(".model") or hasattr(tokenizer, "sp_model"):
    make = (
      'tokenizer = AlbertTokenizer("spiece.model")  # lower-cases, as tokenizer_config.json says'
    )
    cls = "AlbertTokenizer"
  else:
    make = 'tokenizer = BertTokenizer("vocab.txt")  # WordPiece, settings in tokenizer_config.json'
    cls = "BertTokenizer"
  return f"""```python
from transformers import {cls}  # or albert_flax.load_tokenizer(".")
{make}
enc = tokenizer(["first text", "another"], padding=True, return_tensors="np")
input_ids, attention_mask, token_type_ids = (
    enc[k].astype("int32") for k in ("input_ids", "attention_mask", "token_type_ids"))
```
"""


def _readme(fmt, name, axes, outputs, longest, quantized, tokenizer) -> str:
  shape = "[" + ", ".join(axes) + "]"
  weights = "int8 weights (per-channel scales)" if quantized else "float32 weights"
  return f"""# ALBERT {name}: {fmt}

Exported with albert-flax (`af.export`); {weights}. Files: `{converters.ARTIFACT[fmt]}` (the model),
`config.json` (its ALBERT config), `export.json` (inputs and outputs), and the tokenizer.

Inputs: `input_ids`, `attention_mask` (1 = token, 0 = padding), `token_type_ids` (segment 0/1),
each int32 {shape}; any {" and ".join(a for a in axes if a != "seq")} size and any seq up to
{longest}. Pad on the right. Outputs (float32): {", ".join(f"`{o}`" for o in outputs)}.

## Tokenize

{_tokenizer_lines(tokenizer)}
## Run

```python
{_CALLS[fmt]}
```
"""
