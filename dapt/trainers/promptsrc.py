"""The PromptSRC trainer: the method of ``dapt.methods.promptsrc`` plus Gaussian prompt aggregation.

GPA (as upstream): epoch e = 1 .. MAX_EPOCH gets the weight N(e; GPA_MEAN, GPA_STD), normalised
to sum 1; after each epoch w_e * (learnable state) is added to a running sum, and after the last
epoch the sum replaces the prompts (so the last checkpoint holds the aggregated prompts). The
running sum is part of every checkpoint, so a resumed run ends bit-identical to an uninterrupted one.

Checkpoints go to ``VLPromptLearner/`` under upstream's key names (``prompt_learner.ctx``,
``image_encoder.VPT``, ``image_encoder.transformer.resblocks.<i>.VPT_shallow``,
``text_encoder.transformer.resblocks.<i>.VPT_shallow``); upstream's own checkpoints (whole model,
fp16, with class-dependent ``token_prefix`` / ``token_suffix`` buffers) load unchanged.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import List

import torch

from dapt.config import CN, register_config
from dapt.engine.build import TRAINER_REGISTRY
from dapt.engine.trainer import HookBase
from dapt.methods.promptsrc import PromptSRCMethod
from dapt.trainers.base import PromptTrainer
from dapt.trainers.ivlp import RenamedStateMixin

logger = logging.getLogger(__name__)


@register_config
def add_promptsrc_config(cfg):
    cfg.TRAINER.PROMPTSRC = CN()
    cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4  # visual prompt tokens per prompted image layer
    cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4  # text context tokens per prompted text layer
    cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"  # words initialising the text context (used when N_CTX_TEXT <= 4)
    cfg.TRAINER.PROMPTSRC.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (autocast on CUDA; CPU runs fp32)
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9  # prompted image layers (0 = none, 1 = shallow)
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9  # prompted text layers (>= 1; 1 = shallow)
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25  # weight of the L1 between prompted and frozen text features (an int, as upstream)
    cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10  # weight of the L1 between prompted and frozen image features
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15  # mean (in epochs, 1-based) of the Gaussian prompt-aggregation weights
    cfg.TRAINER.PROMPTSRC.GPA_STD = 1  # standard deviation (epochs) of the Gaussian prompt-aggregation weights


def gpa_weights(mean: float, std: float, num_epochs: int) -> List[float]:
    """N(e; mean, std) for e = 1 .. num_epochs, normalised to sum 1 (upstream's ``get_gauss``)."""
    if std <= 0:
        raise ValueError(f"TRAINER.PROMPTSRC.GPA_STD must be > 0, got {std}")
    dens = [math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)) for e in range(1, num_epochs + 1)]
    total = sum(dens)
    if total <= 0:
        raise ValueError(f"GPA weights vanish for GPA_MEAN {mean}, GPA_STD {std} over {num_epochs} epochs")
    return [d / total for d in dens]


class GPAHook(HookBase):
    """Adds w_e * learnable state to the trainer's running sum after every epoch and loads the sum
    into the model after the last one (before that epoch's checkpoint is written)."""

    def after_epoch(self):
        t = self.trainer
        w = t.gpa_weights[t.epoch]
        params = t.model.learnable_parameters()
        with torch.no_grad():
            for name, p in params.items():
                term = p.detach().float() * w
                t.gpa_sum[name] = term if name not in t.gpa_sum else t.gpa_sum[name] + term
            if t.epoch + 1 == t.max_epoch:
                logger.info("GPA: using the Gaussian-weighted prompts of all %d epochs", t.max_epoch)
                for name, p in params.items():
                    p.copy_(t.gpa_sum[name].to(p.dtype))


@TRAINER_REGISTRY.register()
class PromptSRC(RenamedStateMixin, PromptTrainer):
    """IVLP prompts with self-regularising constraints and Gaussian prompt aggregation."""

    config_node = "PROMPTSRC"
    checkpoint_name = "VLPromptLearner"
    aliases = {"text_prompts.": "text_encoder."}

    method_class = PromptSRCMethod

    def build_model(self) -> None:
        super().build_model()
        c = self.cfg.TRAINER.PROMPTSRC
        self.gpa_weights = gpa_weights(float(c.GPA_MEAN), float(c.GPA_STD), self.cfg.OPTIM.MAX_EPOCH)
        self.gpa_sum: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self.register_hooks([GPAHook()])

    def checkpoint_state(self, val_result=None) -> dict:
        state = super().checkpoint_state(val_result)
        state["gpa"] = OrderedDict((k, v.detach().cpu().clone()) for k, v in self.gpa_sum.items())
        return state

    def load_extra_state(self, ckpt: dict, path: Path) -> None:
        gpa = ckpt.get("gpa")
        if gpa is None:
            raise ValueError(f"{path} holds no GPA running sum (key 'gpa'): it was not written by this PromptSRC "
                             f"trainer; start a fresh run in another --output-dir")
        params = self.model.learnable_parameters()
        self.gpa_sum = OrderedDict((k, v.to(params[k].device)) for k, v in gpa.items())
