"""VPT on CLIP (the vision-only baseline of the MaPLe code base): learnable visual prompt tokens.

As upstream (multimodal-prompt-learning, ``trainers/vpt.py``): N_CTX_VISION tokens, N(0, 0.02),
appended after the patch tokens before ``ln_pre``; with PROMPT_DEPTH_VISION = d > 1 the blocks
1 .. d-1 each get their own N_CTX_VISION tokens that replace the previous ones (deep VPT). The
text side is frozen: the hand-written prompt "a photo of a {class}." (upstream hard-codes it;
CTX_INIT is declared for compatibility but, as upstream, not used).

Learnable tensors carry upstream's state-dict names (``image_encoder.VPT``,
``image_encoder.transformer.resblocks.<i>.VPT_shallow``), so upstream checkpoints load.
"""
from __future__ import annotations

import logging
from typing import List

import torch

from dapt.config import CN, register_config
from dapt.methods.base import PromptMethod
from dapt.methods.prompts import PromptSlots
from dapt.models.image_encoder import PromptedImageEncoder
from dapt.utils.registry import METHOD_REGISTRY

logger = logging.getLogger(__name__)

VPT_TEXT_TEMPLATE = "a photo of a {}."  # upstream's fixed text prompt for VPT


@register_config
def add_vpt_config(cfg):
    cfg.TRAINER.VPT = CN()
    cfg.TRAINER.VPT.N_CTX_VISION = 2  # visual prompt tokens per prompted layer
    cfg.TRAINER.VPT.CTX_INIT = "a photo of a"  # kept for upstream configs; VPT's text prompt is fixed
    cfg.TRAINER.VPT.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (autocast on CUDA; CPU runs fp32)
    cfg.TRAINER.VPT.PROMPT_DEPTH_VISION = 1  # prompted image layers: 1 = shallow VPT, up to the layer count = deep


@METHOD_REGISTRY.register(name="VPT")
class VPTMethod(PromptMethod):
    config_node = "VPT"

    def __init__(self, cfg, classnames, clip_model, tokenizer):
        super().__init__(cfg, classnames, clip_model, tokenizer)
        c = cfg.TRAINER.VPT
        if c.PROMPT_DEPTH_VISION < 1:
            raise ValueError("TRAINER.VPT.PROMPT_DEPTH_VISION must be >= 1 (1 = shallow visual prompts)")
        self.image_tower = PromptedImageEncoder(clip_model.visual)
        self.image_encoder = PromptSlots(c.N_CTX_VISION, self.image_tower.width, c.PROMPT_DEPTH_VISION,
                                         self.image_tower.num_layers)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_tower(images, self.image_encoder.first(), self.image_encoder.deep())

    def _fixed_text(self, names: List[str]) -> torch.Tensor:
        return self.frozen_text_features([VPT_TEXT_TEMPLATE.format(n.replace("_", " ")) for n in names])

    def encode_text(self) -> torch.Tensor:
        """The frozen CLIP features of "a photo of a {class}." (computed once)."""
        return self._fixed_text(self.classnames)

    def encode_text_with_context(self, names: List[str]) -> torch.Tensor:
        """VPT's text context is the fixed template: frozen features of "a photo of a {name}."."""
        return self._fixed_text(list(names))
