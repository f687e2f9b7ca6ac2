"""Prompt-tuning methods: the ``PromptMethod`` interface (``base``), shared prompt learners
(``prompts``) and one module per method, each registered in ``METHOD_REGISTRY`` when imported
(``dapt.trainers`` imports the built-in ones)."""
from dapt.methods.base import PromptMethod, classification_loss
from dapt.utils.registry import METHOD_REGISTRY

__all__ = ["METHOD_REGISTRY", "PromptMethod", "classification_loss"]
