"""The registered VPT trainer. The method lives in ``dapt.methods.vpt``; its names are
re-exported here (their old import path)."""
from __future__ import annotations

from dapt.engine.build import TRAINER_REGISTRY
from dapt.methods.prompts import PromptSlots  # noqa: F401  (old import path)
from dapt.methods.vpt import VPT_TEXT_TEMPLATE, VPTMethod, add_vpt_config  # noqa: F401  (old import path)
from dapt.trainers.base import PromptTrainer


@TRAINER_REGISTRY.register()
class VPT(PromptTrainer):
    """Visual prompt tuning (shallow or deep) on a frozen CLIP with fixed text prompts."""

    method_class = VPTMethod
    config_node = "VPT"
    checkpoint_name = "prompt_learner"
