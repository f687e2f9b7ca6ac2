"""The registered IVLP trainer. The method lives in ``dapt.methods.ivlp``; its names are
re-exported here (their old import path)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict

from dapt.engine.build import TRAINER_REGISTRY
from dapt.methods.ivlp import IVLPMethod, add_ivlp_config  # noqa: F401  (old import path)
from dapt.methods.prompts import ContextPromptLearner, ContextTextMixin, PromptSlots  # noqa: F401  (old import path)
from dapt.trainers.base import PromptTrainer


class RenamedStateMixin:
    """Write and read checkpoints under upstream's names where ours differ (``aliases``:
    internal prefix -> upstream prefix)."""

    aliases: Dict[str, str] = {}

    def _rename(self, key: str, to_upstream: bool) -> str:
        for ours, theirs in self.aliases.items():
            src, dst = (ours, theirs) if to_upstream else (theirs, ours)
            if key.startswith(src):
                return dst + key[len(src):]
        return key

    def get_model_state(self):
        return OrderedDict((self._rename(k, True), v) for k, v in super().get_model_state().items())

    def load_model_state(self, state):
        # upstream checkpoints hold the whole model; only renamed prompt keys are translated
        super().load_model_state({self._rename(k, False): v for k, v in state.items()})


@TRAINER_REGISTRY.register()
class IVLP(RenamedStateMixin, PromptTrainer):
    """Independent (uncoupled) deep vision and language prompts."""

    method_class = IVLPMethod
    config_node = "IVLP"
    checkpoint_name = "VLPromptLearner"
    aliases = {"text_prompts.": "text_encoder."}
