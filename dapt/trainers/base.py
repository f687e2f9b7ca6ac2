"""``PromptTrainer``: the trainer that drives any ``PromptMethod``, alone or composed with DAPT.

A subclass names its method (``method_class``) and the method's config node (``config_node``)
and registers itself with ``@TRAINER_REGISTRY.register()``. With ``DAPT.ENABLED`` the step's loss
is the method's own terms plus DAPT's (``dapt.trainers.dapt_step``). ``PromptMethod`` and
``classification_loss`` are re-exported here (their old import path); they live in
``dapt.methods.base``.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Dict

import torch

from dapt.engine.trainer import TrainerBase
from dapt.methods.base import PromptMethod, classification_loss
from dapt.models.clip import build_clip_from_cfg, get_tokenizer

__all__ = ["PromptMethod", "PromptTrainer", "classification_loss"]

logger = logging.getLogger(__name__)


class PromptTrainer(TrainerBase):
    """Trainer for a ``PromptMethod``; subclasses set ``method_class`` and ``config_node``.

    ``config_node`` names the method's node under TRAINER (e.g. "COOP"), which holds PREC.
    Checkpoints keep only the learnable state, with key names relative to ``checkpoint_name``
    as upstream writes them (e.g. CoOp's ``prompt_learner/model.pth.tar-50`` holds ``ctx``).
    """

    method_class = PromptMethod
    config_node = ""
    checkpoint_name = "prompt_learner"
    dapt = None  # the DAPT decoupler when DAPT.ENABLED (set up in build_model)

    def method_cfg(self):
        node = self.config_node or getattr(self.method_class, "config_node", "")
        return getattr(self.cfg.TRAINER, node) if node else None

    def method_precision(self) -> str:
        node = self.method_cfg()
        return getattr(node, "PREC", "fp32") if node is not None else "fp32"

    def build_model(self) -> None:
        classnames = self.dm.classnames
        logger.info("Loading CLIP (backbone: %s)", self.cfg.MODEL.BACKBONE.NAME)
        clip_model = build_clip_from_cfg(self.cfg)
        tokenizer = get_tokenizer(self.cfg.MODEL.BACKBONE.NAME)
        logger.info("Building %s", type(self).__name__)
        self.model = self.method_class(self.cfg, classnames, clip_model, tokenizer)
        self.model.multi_label = self.multi_label
        n = sum(p.numel() for p in self.model.learnable_parameters().values())
        names = list(self.model.learnable_parameters())
        logger.info("Learnable parameters: %s (%d tensors: %s%s)", f"{n:,}", len(names), ", ".join(names[:6]),
                    " ..." if len(names) > 6 else "")
        if self.cfg.MODEL.INIT_WEIGHTS:
            from dapt.engine.checkpoint import load_checkpoint

            self.load_model_state(load_checkpoint(self.cfg.MODEL.INIT_WEIGHTS)["state_dict"])
        if self.cfg.DAPT.ENABLED:
            from dapt.decouple.integration import attach_dapt

            self.dapt = attach_dapt(self)

    def trainable_parameters(self):
        return list(self.model.learnable_parameters().values())

    def _prefix(self) -> str:
        names = list(self.model.learnable_parameters())
        prefix = self.checkpoint_name + "."
        return prefix if names and all(n.startswith(prefix) for n in names) else ""

    def get_model_state(self) -> "OrderedDict[str, torch.Tensor]":
        prefix = self._prefix()
        return OrderedDict((n[len(prefix):], p.detach().cpu().clone()) for n, p in self.model.learnable_parameters().items())

    def load_model_state(self, state: Dict[str, torch.Tensor]) -> None:
        prefix = self._prefix()
        params = self.model.learnable_parameters()
        # upstream checkpoints also carry class-dependent buffers (token_prefix/suffix): ignored,
        # so a model trained on base classes evaluates on new ones.
        state = {prefix + k if prefix + k in params else k: v for k, v in state.items()}
        missing = [k for k in params if k not in state]
        if missing:
            raise KeyError(f"checkpoint lacks learnable tensors {missing[:4]}; was it written by another method?")
        with torch.no_grad():
            for k, p in params.items():
                v = state[k]
                if v.shape != p.shape:
                    raise ValueError(f"checkpoint tensor '{k}' has shape {tuple(v.shape)}, model expects {tuple(p.shape)}")
                p.copy_(v.to(p.dtype))

    def compute_losses(self, batch):
        if self.dapt is not None:
            return self.dapt.compute_losses(self, batch)
        images, labels = self.parse_batch(batch)
        return self.model.losses(images, labels)

    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        if self.dapt is not None:
            return self.dapt.inference(self.model, images)
        return self.model(images)
