"""Pretraining configs (ml_collections): `python -m pretrain --config=pretrain/configs/<name>.py`.

`common.get_config()` holds every key with its meaning; each size overrides what differs.
"""
