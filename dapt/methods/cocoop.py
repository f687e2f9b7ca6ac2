"""CoCoOp (Zhou et al., CVPR 2022): context vectors shifted by a meta-net of each image.

As upstream (``trainers/cocoop.py``): the context is the embedding of CTX_INIT's words (N_CTX
becomes their count) or N(0, 0.02) with "X X .. X {class}."; the meta-net
Linear(E, E // 16) - ReLU - Linear(E // 16, D) maps each image's *normalised* feature to a bias
added to every context vector; each image gets its own C class prompts, and its logits are
``logit_scale * <image feature, its own class features>`` (cosines). Training is the
cross-entropy of those logits (upstream's batch is 1; larger batches mean the same per image).

Evaluation is batched: the B x C conditioned prompts of a batch go through the text tower as one
big batch cut into chunks of at most ``max_text_batch`` prompts (bounded memory), with the exact
truncation to the longest prompt -- the same numbers as upstream's image-by-image loop.

``encode_text()`` without image features returns the class features of the *unshifted* context
(C, E) -- what the prompts are before any image is seen; ``encode_text(image_features)`` gives the
conditioned features (B, C, E), and ``logits`` accepts both shapes.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dapt.config import CN, register_config
from dapt.methods.base import PromptMethod, classification_loss
from dapt.methods.prompts import ContextPromptLearner
from dapt.models.image_encoder import PromptedImageEncoder
from dapt.utils.registry import METHOD_REGISTRY

logger = logging.getLogger(__name__)


@register_config
def add_cocoop_config(cfg):
    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16  # number of context vectors (replaced by the word count of CTX_INIT)
    cfg.TRAINER.COCOOP.CTX_INIT = ""  # initialisation words, e.g. "a photo of a"; "" = random N(0, 0.02)
    cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (autocast on CUDA; CPU runs fp32)


class CoCoOpPromptLearner(ContextPromptLearner):
    """Context vectors plus the meta-net (``meta_net.linear1`` / ``meta_net.linear2`` as upstream)."""

    def __init__(self, classnames, text_encoder, tokenizer, n_ctx: int, ctx_init: str, vis_dim: int):
        super().__init__(classnames, text_encoder, tokenizer, n_ctx, ctx_init, init_rule="all_words")
        ctx_dim = text_encoder.width
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ])).to(self.ctx.device)

    def shifted_context(self, image_features_normed: torch.Tensor) -> torch.Tensor:
        """(B, n_ctx, D): the context plus each image's meta-net bias."""
        bias = self.meta_net(image_features_normed)
        return self.ctx.unsqueeze(0) + bias.unsqueeze(1)


@METHOD_REGISTRY.register(name="CoCoOp")
class CoCoOpMethod(PromptMethod):
    config_node = "COCOOP"

    max_text_batch = 4096  # prompts per text-tower call when conditioning on many images (>= one image's classes)

    def __init__(self, cfg, classnames, clip_model, tokenizer):
        super().__init__(cfg, classnames, clip_model, tokenizer)
        c = cfg.TRAINER.COCOOP
        self.image_tower = PromptedImageEncoder(clip_model.visual)
        self.prompt_learner = CoCoOpPromptLearner(self.classnames, self.text_encoder, tokenizer, c.N_CTX, c.CTX_INIT,
                                                  self.image_tower.output_dim)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_tower(images)

    def conditioned_text_features(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, C, E) class features with each image's shifted context (features not normalised)."""
        pl = self.prompt_learner
        ctx = pl.shifted_context(F.normalize(image_features, dim=-1))  # (B, n, D)
        b, n_cls = ctx.shape[0], pl.token_prefix.shape[0]
        per_chunk = max(1, self.max_text_batch // n_cls)
        out = []
        for s in range(0, b, per_chunk):
            c = ctx[s:s + per_chunk]
            k = c.shape[0]
            ctx_rows = c.unsqueeze(1).expand(-1, n_cls, -1, -1).reshape(k * n_cls, c.shape[1], c.shape[2])
            prefix = pl.token_prefix.repeat(k, 1, 1)
            suffix = pl.token_suffix.repeat(k, 1, 1)
            ids = pl.token_ids.repeat(k, 1)
            feats = self.text_encoder(pl.assemble(ctx_rows, prefix, suffix), ids)
            out.append(feats.view(k, n_cls, -1))
        return torch.cat(out, dim=0)

    def encode_text(self, image_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Unshifted class features (C, E), or conditioned ones (B, C, E) given image features."""
        if image_features is not None:
            return self.conditioned_text_features(image_features)
        pl = self.prompt_learner
        return self.text_encoder(pl(), pl.token_ids)

    def encode_text_with_context(self, names: List[str]) -> torch.Tensor:
        """Other names behind the unshifted context (C', E)."""
        ids, prompts = self.prompt_learner.for_names(list(names))
        return self.text_encoder(prompts, ids)

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        if text_features.dim() == 2:
            return super().logits(image_features, text_features)
        img = F.normalize(image_features, dim=-1)
        txt = F.normalize(text_features, dim=-1)
        return self.logit_scale * torch.einsum("be,bce->bc", img, txt)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        img = self.encode_image(images)
        return self.logits(img, self.conditioned_text_features(img))

    def losses(self, images, labels, image_features=None, text_features=None):
        """The cross-entropy against each image's own class features; ``text_features``, when
        given, must be those conditioned features (B, C, E) (class features shared by the batch
        do not define CoCoOp's logits)."""
        img = self.encode_image(images) if image_features is None else image_features
        if text_features is None:
            text_features = self.conditioned_text_features(img)
        elif text_features.dim() != 3:
            raise ValueError("CoCoOp's text features depend on each image: pass (B, C, E) conditioned features")
        logits = self.logits(img, text_features)
        return {"cls": classification_loss(logits, labels, self.multi_label)}, logits
