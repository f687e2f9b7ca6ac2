"""The registered MaPLe trainer. The method lives in ``dapt.methods.maple``; its names are
re-exported here (their old import path)."""
from __future__ import annotations

from dapt.engine.build import TRAINER_REGISTRY
from dapt.methods.maple import MaPLeMethod, MultiModalPromptLearner, add_maple_config  # noqa: F401  (old import path)
from dapt.trainers.base import PromptTrainer


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    """Multi-modal prompt learning."""

    method_class = MaPLeMethod
    config_node = "MAPLE"
    checkpoint_name = "MultiModalPromptLearner"
