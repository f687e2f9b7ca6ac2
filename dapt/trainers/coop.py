"""The registered CoOp trainer. The method lives in ``dapt.methods.coop``; its names are
re-exported here (their old import path)."""
from __future__ import annotations

from dapt.engine.build import TRAINER_REGISTRY
from dapt.methods.coop import CoOpMethod, CoOpPromptLearner, add_coop_config  # noqa: F401  (old import path)
from dapt.trainers.base import PromptTrainer


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """Context Optimization."""

    method_class = CoOpMethod
    config_node = "COOP"
    checkpoint_name = "prompt_learner"
