"""open_clip model configs that ship with dapt (tiny CLIPs for the embedded testbed and tests).

``register_model_configs()`` adds every ``*.json`` here to open_clip's registry once, under its
file name: ``dapt-tiny-vit`` is a 64 px ViT (patch 8, 4 layers, width 128) with a 4-layer,
width-128 text tower; its pretrained weights come from ``dapt.models.toy``.
"""
from __future__ import annotations

import os

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
_registered = False


def register_model_configs() -> None:
    """Register the packaged configs with open_clip (idempotent)."""
    global _registered
    if _registered:
        return
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    _registered = True
