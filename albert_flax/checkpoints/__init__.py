"""Checkpoint formats: read and write ALBERT weights in every layout a user meets.

    loading        from_pretrained: a checkpoint fitted to a model class (heads kept, dropped, new)
    sources        every layout it reads: orbax, workdirs, transformers, original TF1, Hub ids
    saving         save_pretrained: orbax, transformers, original TF1; a model card with each
    convert_hf     transformers' names and safetensors / PyTorch files
    convert_tf     google-research/albert's and brightmart's TF1 variable names and files
    name_maps      the name tables the two converters read
    integrity      each array's fingerprint, written beside the arrays and checked on restore
    model_card     README.md of a saved model; push_to_hub

Where each file of a workdir or saved model lives is `albert_flax.workdir`.
"""

from albert_flax.checkpoints.loading import dummy_inputs, expected_shapes, from_pretrained
from albert_flax.checkpoints.model_card import push_to_hub
from albert_flax.checkpoints.saving import check_parameters, flat_parameters, save_pretrained
from albert_flax.checkpoints.sources import short_reason

__all__ = [
  "check_parameters",
  "dummy_inputs",
  "expected_shapes",
  "flat_parameters",
  "from_pretrained",
  "push_to_hub",
  "save_pretrained",
  "short_reason",
]
