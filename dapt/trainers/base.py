"""The common interface of every prompt-tuning method, and the trainer that drives it.

A method (``PromptMethod``) wraps a frozen open_clip CLIP and adds learnable prompts. It exposes
``encode_image``, ``encode_text``, ``logits``, ``losses`` and its learnable parameters; DAPT and
the engine only talk to this interface, so a new method is one module with one subclass plus its
config node, registered with ``@TRAINER_REGISTRY.register()`` on a ``PromptTrainer`` subclass.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

import dapt.decouple.config  # noqa: F401  registers the DAPT config node
from dapt.engine.trainer import TrainerBase
from dapt.models.clip import build_clip_from_cfg, get_tokenizer
from dapt.models.text_encoder import PromptedTextEncoder

logger = logging.getLogger(__name__)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """Cross-entropy, or the multi-label soft-margin loss for multi-hot targets."""
    if multi_label:
        return F.multilabel_soft_margin_loss(logits, labels.float())
    return F.cross_entropy(logits, labels)


class PromptMethod(nn.Module):
    """A CLIP model with learnable prompts.

    Subclasses create their learnable modules in ``__init__`` and implement ``encode_text``
    (and ``encode_image`` when they prompt the image side). All CLIP weights stay frozen.
    """

    def __init__(self, cfg, classnames: Sequence[str], clip_model: nn.Module, tokenizer):
        super().__init__()
        self.cfg = cfg
        self.clip_model = clip_model
        self.tokenizer = tokenizer
        self.text_encoder = PromptedTextEncoder(clip_model)
        self.classnames = [c.replace("_", " ") for c in classnames]
        self.multi_label = False
        for p in self.clip_model.parameters():
            p.requires_grad_(False)

    # -------------------------------------------------------------- interface
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Image features (B, E), not normalised."""
        return self.clip_model.encode_image(images)

    def encode_text(self) -> torch.Tensor:
        """Class text features (C, E) for ``self.classnames``, not normalised."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip_model.logit_scale.exp()

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """CLIP logits: scale * cosine similarity."""
        image_features = F.normalize(image_features, dim=-1)
        text_features = F.normalize(text_features, dim=-1)
        return self.logit_scale * image_features @ text_features.t()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(self.encode_image(images), self.encode_text())

    def losses(self, images: torch.Tensor, labels: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """The method's own training terms and the logits (for the training accuracy)."""
        logits = self(images)
        return {"cls": classification_loss(logits, labels, self.multi_label)}, logits

    def text_layer_prompts(self) -> Optional[List[Optional[torch.Tensor]]]:
        """Deep text prompts per layer (entry i feeds block i; MaPLe / IVLP), or None."""
        return None

    def encode_texts(self, texts: List[str]) -> torch.Tensor:
        """Features of whole sentences through the prompted text tower: the first-layer tokens are
        the sentence's frozen embeddings, deeper layers get the method's deep text prompts."""
        layer_prompts = self.text_layer_prompts()
        if layer_prompts is None:  # nothing learnable reaches them: constant, computed once
            return self.frozen_text_features(texts)
        ids = self.tokenize(texts)
        return self.text_encoder(self.text_encoder.embed(ids), ids, layer_prompts=layer_prompts)

    def encode_text_with_context(self, names: List[str]) -> torch.Tensor:
        """Features of ``names`` with the method's learned first-layer context in front of them
        (e.g. background classes prompted like the foreground classes)."""
        raise NotImplementedError(f"{type(self).__name__} has no shared first-layer text context")

    def learnable_parameters(self) -> "OrderedDict[str, nn.Parameter]":
        return OrderedDict((n, p) for n, p in self.named_parameters() if p.requires_grad)

    # -------------------------------------------------------------- helpers
    def tokenize(self, texts: List[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.clip_model.positional_embedding.device)

    def frozen_text_features(self, texts: List[str]) -> torch.Tensor:
        """Un-prompted CLIP text features (exact truncation, fp32), not normalised; computed once
        per list of sentences and device (the CLIP weights never change)."""
        device = self.clip_model.positional_embedding.device
        key = (tuple(texts), device)
        cache = self.__dict__.setdefault("_frozen_text_cache", {})
        if key not in cache:
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                cache[key] = self.text_encoder.encode_tokens(self.tokenize(list(texts))).float()
        return cache[key]

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip_model.eval()  # the frozen encoders never switch to training behaviour
        return self


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
        return getattr(self.cfg.TRAINER, self.config_node) if self.config_node else None

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
