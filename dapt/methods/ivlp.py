"""IVLP (independent vision-language prompting, the MaPLe paper's baseline).

As upstream (multimodal-prompt-learning, ``trainers/independentVL.py``):
- text: N_CTX_TEXT context vectors at token positions 1 .. N_CTX_TEXT of
  "{CTX_INIT} {class}." -- initialised from the embeddings of CTX_INIT's first N_CTX_TEXT tokens
  when CTX_INIT is set and N_CTX_TEXT <= 4, else N(0, 0.02) with "X X .. X {class}."; blocks
  1 .. PROMPT_DEPTH_TEXT-1 each replace those positions with their own N(0, 0.02) tokens;
- image: N_CTX_VISION tokens after the patch tokens (before ln_pre), replaced at blocks
  1 .. PROMPT_DEPTH_VISION-1; PROMPT_DEPTH_VISION 0 leaves the image tower untouched.
The two sides are not coupled.

Upstream's state-dict names: ``prompt_learner.ctx``, ``image_encoder.VPT``,
``image_encoder.transformer.resblocks.<i>.VPT_shallow`` and
``text_encoder.transformer.resblocks.<i>.VPT_shallow``; the last live here under
``text_prompts.`` (``text_encoder`` is the frozen tower) and are renamed in checkpoints.
"""
from __future__ import annotations

import logging
from typing import List, Optional

import torch

from dapt.config import CN, register_config
from dapt.methods.base import PromptMethod
from dapt.methods.prompts import ContextPromptLearner, ContextTextMixin, PromptSlots
from dapt.models.image_encoder import PromptedImageEncoder
from dapt.utils.registry import METHOD_REGISTRY

logger = logging.getLogger(__name__)


@register_config
def add_ivlp_config(cfg):
    cfg.TRAINER.IVLP = CN()
    cfg.TRAINER.IVLP.N_CTX_VISION = 2  # visual prompt tokens per prompted image layer
    cfg.TRAINER.IVLP.N_CTX_TEXT = 2  # text context tokens per prompted text layer
    cfg.TRAINER.IVLP.CTX_INIT = "a photo of a"  # words initialising the text context (used when N_CTX_TEXT <= 4)
    cfg.TRAINER.IVLP.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (autocast on CUDA; CPU runs fp32)
    cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 9  # prompted image layers (0 = none, 1 = shallow)
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = 9  # prompted text layers (>= 1; 1 = shallow)


@METHOD_REGISTRY.register(name="IVLP")
class IVLPMethod(ContextTextMixin, PromptMethod):
    config_node = "IVLP"

    def __init__(self, cfg, classnames, clip_model, tokenizer):
        super().__init__(cfg, classnames, clip_model, tokenizer)
        c = getattr(cfg.TRAINER, self.config_node)  # PromptSRC builds the same prompts from its own node
        if c.PROMPT_DEPTH_TEXT < 1:
            raise ValueError(f"TRAINER.{self.config_node}.PROMPT_DEPTH_TEXT must be >= 1 (prompts in both towers); "
                             "use the VPT trainer for vision-only prompts")
        self.prompt_learner = ContextPromptLearner(self.classnames, self.text_encoder, tokenizer, c.N_CTX_TEXT,
                                                   c.CTX_INIT, init_rule="first_n")
        self.image_tower = PromptedImageEncoder(clip_model.visual)
        self.image_encoder = PromptSlots(c.N_CTX_VISION, self.image_tower.width, c.PROMPT_DEPTH_VISION,
                                         self.image_tower.num_layers)
        self.text_prompts = PromptSlots(c.N_CTX_TEXT, self.text_encoder.width, c.PROMPT_DEPTH_TEXT,
                                        self.text_encoder.num_layers, with_first=False)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_tower(images, self.image_encoder.first(), self.image_encoder.deep())

    def text_layer_prompts(self) -> Optional[List[Optional[torch.Tensor]]]:
        return self.text_prompts.deep()
