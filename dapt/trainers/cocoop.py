"""The registered CoCoOp trainer. The method lives in ``dapt.methods.cocoop``; its names are
re-exported here (their old import path)."""
from __future__ import annotations

from dapt.engine.build import TRAINER_REGISTRY
from dapt.methods.cocoop import CoCoOpMethod, CoCoOpPromptLearner, add_cocoop_config  # noqa: F401  (old import path)
from dapt.trainers.base import PromptTrainer


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    """Conditional context optimisation."""

    method_class = CoCoOpMethod
    config_node = "COCOOP"
    checkpoint_name = "prompt_learner"
