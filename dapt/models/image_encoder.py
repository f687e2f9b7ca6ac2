"""The prompted image tower: open_clip's ViT run block by block, with visual prompt tokens.

Visual prompt tokens go after the patch tokens, once the positional embedding has been added
and before ``ln_pre`` (which then normalises the whole sequence, prompts included), as in
VPT / IVLP / MaPLe upstream. At a deeper block the outputs at the prompt positions are dropped
and that block's own prompt tokens take their place (not normalised by ``ln_pre``).

The sequence layout is ``[CLS, patch_1 .. patch_P, prompt_1 .. prompt_n]``, so patch tokens are
always ``x[:, 1:1 + P]``. Blocks are called as modules, so forward hooks on them (or on their
``ln_1``, as Grad-CAM does) see the prompted sequence.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from dapt.models.blocks import LayoutTracker


class PromptedImageEncoder(nn.Module):
    """Encode images into CLIP image features with optional (deep) visual prompts.

    The module borrows the frozen parts of an open_clip ``VisionTransformer``; it owns no
    parameters. Only the configured image size is supported (no positional interpolation).
    """

    def __init__(self, visual: nn.Module):
        super().__init__()
        if not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
            raise ValueError(f"visual prompting needs a ViT image tower; got {type(visual).__name__}")
        if getattr(visual, "attn_pool", None) is not None:
            raise ValueError("visual prompting does not support attentional pooling towers")
        pool = getattr(visual, "pool_type", "tok")
        if pool != "tok":
            raise ValueError(f"visual prompting needs class-token pooling; this tower pools with '{pool}'")
        if not getattr(visual.transformer, "batch_first", True):
            raise ValueError("the image transformer must be batch-first")
        self.visual = visual

    @property
    def width(self) -> int:
        return self.visual.class_embedding.shape[0]

    @property
    def num_layers(self) -> int:
        return len(self.visual.transformer.resblocks)

    @property
    def num_patches(self) -> int:
        return self.visual.positional_embedding.shape[0] - 1

    @property
    def output_dim(self) -> int:
        proj = self.visual.proj
        return proj.shape[1] if proj is not None else self.width

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> tokens (B, 1 + P, D) with the positional embedding added."""
        v = self.visual
        x = v.conv1(images.to(v.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # (B, P, D)
        if x.shape[1] != self.num_patches:
            raise ValueError(f"images of size {tuple(images.shape[-2:])} give {x.shape[1]} patches, the tower "
                             f"expects {self.num_patches}; resize inputs to the model's image size (INPUT.SIZE)")
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + v.positional_embedding.to(x.dtype)
        return v.patch_dropout(x)

    @staticmethod
    def _batched(p: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
        p = p.to(dtype)
        if p.dim() == 2:
            return p.unsqueeze(0).expand(n, -1, -1)
        if p.dim() != 3 or p.shape[0] != n:
            raise ValueError(f"prompt tokens must be (n, D) or (B, n, D) with B = {n}; got {tuple(p.shape)}")
        return p

    def forward(
        self,
        images: torch.Tensor,
        prompts: Optional[torch.Tensor] = None,
        layer_prompts: Optional[Sequence[Optional[torch.Tensor]]] = None,
        return_last_block_input: bool = False,
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Image features (B, E), not normalised.

        prompts:       (n, D) or (B, n, D) tokens appended after the patch tokens (before ln_pre).
        layer_prompts: entry i (i >= 1; (n, D), (B, n, D) or None) replaces the n appended prompt
                       tokens at the input of block i; entry 0 is ignored.
        return_last_block_input: also return the tokens entering the last block (B, 1 + P + n, D).
        """
        v = self.visual
        x = self.embed(images)
        b = x.shape[0]
        n_prompt = 0
        if prompts is not None and prompts.shape[-2] > 0:
            p = self._batched(prompts, b, x.dtype)
            n_prompt = p.shape[1]
            x = torch.cat([x, p], dim=1)
        x = v.ln_pre(x)
        last_input = None
        blocks = v.transformer.resblocks
        state = LayoutTracker(x)  # blocks run sequence-first where that changes nothing (models/blocks.py)
        for i, block in enumerate(blocks):
            if layer_prompts is not None and 0 < i < len(layer_prompts) and layer_prompts[i] is not None:
                p = self._batched(layer_prompts[i], b, x.dtype)
                if p.shape[1] != n_prompt:
                    raise ValueError(f"deep prompt for block {i} has {p.shape[1]} tokens, but {n_prompt} prompt "
                                     f"tokens are in the sequence; deep prompts replace the appended ones")
                length = state.length
                state.splice(length - n_prompt, length, p)
            if i == len(blocks) - 1:
                last_input = state.batch_first()
            state.run(block)
        x = state.batch_first()
        pooled = v.ln_post(x[:, 0])
        if v.proj is not None:
            pooled = pooled @ v.proj
        if return_last_block_input:
            return pooled, last_input
        return pooled
