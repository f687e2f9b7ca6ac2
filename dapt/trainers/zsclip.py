"""The registered zero-shot CLIP trainers. The method lives in ``dapt.methods.zsclip``; its names are
re-exported here (their old import path)."""
from __future__ import annotations

from dapt.engine.build import TRAINER_REGISTRY
from dapt.methods.zsclip import (  # noqa: F401  (old import path)
    CUSTOM_TEMPLATES,
    DEFAULT_TEMPLATE,
    ENSEMBLE_TEMPLATES,
    ZeroshotEnsembleMethod,
    ZeroshotMethod,
    add_zsclip_config,
    template_for,
)
from dapt.trainers.base import PromptTrainer


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(PromptTrainer):
    """Zero-shot CLIP; use with --eval-only (nothing to train)."""

    method_class = ZeroshotMethod
    config_node = "ZSCLIP"

    def trainable_parameters(self):
        return []


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Zero-shot CLIP averaging the dataset template with 7 ImageNet templates (CoOp's variant)."""

    method_class = ZeroshotEnsembleMethod
