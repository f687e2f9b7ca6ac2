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
from typing import List, Optional

import torch
import torch.nn as nn

from dapt.config import CN, register_config
from dapt.engine.build import TRAINER_REGISTRY
from dapt.models.image_encoder import PromptedImageEncoder
from dapt.trainers.base import PromptMethod, PromptTrainer

logger = logging.getLogger(__name__)

VPT_TEXT_TEMPLATE = "a photo of a {}."  # upstream's fixed text prompt for VPT


@register_config
def add_vpt_config(cfg):
    cfg.TRAINER.VPT = CN()
    cfg.TRAINER.VPT.N_CTX_VISION = 2  # visual prompt tokens per prompted layer
    cfg.TRAINER.VPT.CTX_INIT = "a photo of a"  # kept for upstream configs; VPT's text prompt is fixed
    cfg.TRAINER.VPT.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (autocast on CUDA; CPU runs fp32)
    cfg.TRAINER.VPT.PROMPT_DEPTH_VISION = 1  # prompted image layers: 1 = shallow VPT, up to the layer count = deep


class _LayerPrompt(nn.Module):
    def __init__(self, n_ctx: int, width: int):
        super().__init__()
        self.VPT_shallow = nn.Parameter(torch.empty(n_ctx, width))
        nn.init.normal_(self.VPT_shallow, std=0.02)


class PromptSlots(nn.Module):
    """Per-layer prompt tokens named as upstream's state dict names them.

    ``VPT`` (first-layer tokens, only when ``with_first``) and
    ``transformer.resblocks.<i>.VPT_shallow`` for the blocks 1 .. min(depth, layers) - 1.
    """

    def __init__(self, n_ctx: int, width: int, depth: int, num_layers: int, with_first: bool = True):
        super().__init__()
        self.num_layers = num_layers
        self.with_first = with_first and depth >= 1
        if self.with_first:
            self.VPT = nn.Parameter(torch.empty(n_ctx, width))
            nn.init.normal_(self.VPT, std=0.02)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleDict(
            {str(i): _LayerPrompt(n_ctx, width) for i in range(1, min(depth, num_layers))})
        if depth > num_layers:
            logger.warning("prompt depth %d exceeds the %d layers of the tower; prompting all of them", depth, num_layers)

    def first(self) -> Optional[torch.Tensor]:
        return self.VPT if self.with_first else None

    def deep(self) -> Optional[List[Optional[torch.Tensor]]]:
        """Entry i feeds block i (entry 0 is None), or None without deep prompts."""
        slots = self.transformer.resblocks
        if len(slots) == 0:
            return None
        return [slots[str(i)].VPT_shallow if str(i) in slots else None for i in range(self.num_layers)]


class VPTMethod(PromptMethod):
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


@TRAINER_REGISTRY.register()
class VPT(PromptTrainer):
    """Visual prompt tuning (shallow or deep) on a frozen CLIP with fixed text prompts."""

    method_class = VPTMethod
    config_node = "VPT"
    checkpoint_name = "prompt_learner"
