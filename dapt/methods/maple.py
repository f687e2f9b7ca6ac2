"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompts with vision prompts coupled to the text.

As upstream (multimodal-prompt-learning, ``trainers/maple.py`` and ``clip/model.py``):
- text: N_CTX context vectors at token positions 1 .. N_CTX of "{CTX_INIT} {class}." --
  the embeddings of CTX_INIT's first N_CTX tokens when CTX_INIT is set and N_CTX <= 4, else
  N(0, 0.02) with "X X .. X {class}."; blocks 1 .. PROMPT_DEPTH-1 replace those positions with
  ``compound_prompts_text[i-1]`` (N(0, 0.02));
- image: ``proj(ctx)`` (a Linear from the text width to the image width) appended after the
  patch tokens before ln_pre; block i (1 .. PROMPT_DEPTH-1) replaces them with
  ``compound_prompt_projections[i-1](compound_prompts_text[i-1])``. The projections start as
  copies of ONE Linear (upstream deep-copies a single layer), ``proj`` is a separate Linear.
Parameter names equal upstream's state-dict keys (``prompt_learner.ctx``, ``prompt_learner.proj.weight``,
``prompt_learner.compound_prompts_text.0``, ``prompt_learner.compound_prompt_projections.0.weight``, ...).
"""
from __future__ import annotations

import copy
import logging
from typing import List, Optional

import torch
import torch.nn as nn

from dapt.config import CN, register_config
from dapt.methods.base import PromptMethod
from dapt.methods.prompts import ContextPromptLearner, ContextTextMixin
from dapt.models.image_encoder import PromptedImageEncoder
from dapt.utils.registry import METHOD_REGISTRY

logger = logging.getLogger(__name__)


@register_config
def add_maple_config(cfg):
    cfg.TRAINER.MAPLE = CN()
    cfg.TRAINER.MAPLE.N_CTX = 2  # context tokens per prompted layer (text, and their projections on the image side)
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"  # words initialising the first-layer text context (used when N_CTX <= 4)
    cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (autocast on CUDA; CPU runs fp32)
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # prompted layers in both towers (>= 1; 1 = shallow MaPLe)


class MultiModalPromptLearner(ContextPromptLearner):
    """The text context plus the deeper text prompts and their text-to-image couplings."""

    def __init__(self, classnames, text_encoder, tokenizer, n_ctx: int, ctx_init: str, depth: int, vis_width: int):
        if depth < 1:
            raise ValueError("TRAINER.MAPLE.PROMPT_DEPTH must be >= 1 (1 = shallow MaPLe)")
        txt_width = text_encoder.width
        device = text_encoder.positional_embedding.device
        # upstream's creation order: proj, ctx, deeper text prompts, then the coupling layers
        proj = nn.Linear(txt_width, vis_width)
        super().__init__(classnames, text_encoder, tokenizer, n_ctx, ctx_init, init_rule="first_n")
        self.proj = proj.to(device)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.empty(self.n_ctx, txt_width, device=device)) for _ in range(depth - 1)])
        for p in self.compound_prompts_text:
            nn.init.normal_(p, std=0.02)
        layer = nn.Linear(txt_width, vis_width).to(device)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(layer) for _ in range(depth - 1)])
        self.depth = depth

    def visual_prompts(self):
        """(first-layer visual prompts (n, Dv), [projected deeper prompts])."""
        deep = [proj(p) for proj, p in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return self.proj(self.ctx), deep


def _layer_list(prompts: List[torch.Tensor], num_layers: int) -> Optional[List[Optional[torch.Tensor]]]:
    """[None, p_1, p_2, ...] cut to the tower's layers (upstream ignores prompts past the last block)."""
    if not prompts:
        return None
    return ([None] + list(prompts))[:num_layers]


@METHOD_REGISTRY.register(name="MaPLe")
class MaPLeMethod(ContextTextMixin, PromptMethod):
    config_node = "MAPLE"

    def __init__(self, cfg, classnames, clip_model, tokenizer):
        super().__init__(cfg, classnames, clip_model, tokenizer)
        c = cfg.TRAINER.MAPLE
        self.image_tower = PromptedImageEncoder(clip_model.visual)
        self.prompt_learner = MultiModalPromptLearner(self.classnames, self.text_encoder, tokenizer, c.N_CTX, c.CTX_INIT,
                                                      c.PROMPT_DEPTH, self.image_tower.width)
        if c.PROMPT_DEPTH > self.text_encoder.num_layers:
            logger.warning("TRAINER.MAPLE.PROMPT_DEPTH %d exceeds the %d layers; the extra prompts are unused (as upstream)",
                           c.PROMPT_DEPTH, self.text_encoder.num_layers)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        first, deep = self.prompt_learner.visual_prompts()
        return self.image_tower(images, first, _layer_list(deep, self.image_tower.num_layers))

    def text_layer_prompts(self) -> Optional[List[Optional[torch.Tensor]]]:
        return _layer_list(list(self.prompt_learner.compound_prompts_text), self.text_encoder.num_layers)
