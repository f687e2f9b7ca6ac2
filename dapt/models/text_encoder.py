"""The prompted text tower: open_clip's text transformer run block by block.

Running the blocks one at a time lets a method replace prompt tokens at deeper layers (MaPLe,
IVLP) and lets us cut every batch of prompts to its longest prompt: the text tower is causal, so
the feature at the end-of-text token depends only on the tokens before it, and dropping the
padding after the last EOT changes nothing but the cost (about 5x less for typical class names).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn


class PromptedTextEncoder(nn.Module):
    """Encode token *embeddings* (so prompts can be learnable vectors) into CLIP text features.

    The module borrows the frozen parts of an ``open_clip.CLIP``; it owns no parameters.
    """

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.token_embedding = clip_model.token_embedding
        self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)
        pool = getattr(clip_model, "text_pool_type", "argmax")
        if pool != "argmax":
            raise ValueError(f"text pooling '{pool}' is not supported; prompt tuning needs CLIP's EOT (argmax) pooling")

    @property
    def num_layers(self) -> int:
        return len(self.transformer.resblocks)

    @property
    def width(self) -> int:
        return self.positional_embedding.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.positional_embedding.dtype

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, L) -> token embeddings (N, L, D)."""
        return self.token_embedding(token_ids)

    def forward(
        self,
        prompts: torch.Tensor,
        token_ids: torch.Tensor,
        layer_prompts: Optional[Sequence[Optional[torch.Tensor]]] = None,
        prompt_start: int = 1,
        truncate: bool = True,
    ) -> torch.Tensor:
        """Text features (N, E), not normalised.

        prompts:       (N, L, D) token embeddings, learnable context already in place.
        token_ids:     (N, L) ids used only to find each prompt's EOT (the largest id).
        layer_prompts: optional per-layer deep prompts; entry i (a (n, D) or (N, n, D) tensor,
                       or None) replaces tokens [prompt_start, prompt_start + n) at the input of
                       block i (MaPLe / IVLP semantics; entry 0 is ignored: layer 0's prompts
                       are part of ``prompts``).
        truncate:      run the blocks only on the first max(EOT) + 1 tokens (exact).
        """
        eot = token_ids.argmax(dim=-1)
        length = prompts.shape[1]
        if truncate:
            need = int(eot.max().item()) + 1
            if layer_prompts is not None:
                deep = [p.shape[-2] for p in layer_prompts if p is not None]
                if deep:
                    need = max(need, prompt_start + max(deep))
            length = min(length, need)
        x = prompts[:, :length] + self.positional_embedding[:length].to(prompts.dtype)
        mask = self.attn_mask[:length, :length] if self.attn_mask is not None else None
        n = x.shape[0]
        for i, block in enumerate(self.transformer.resblocks):
            if layer_prompts is not None and i > 0 and i < len(layer_prompts) and layer_prompts[i] is not None:
                p = layer_prompts[i].to(x.dtype)
                if p.dim() == 2:
                    p = p.unsqueeze(0).expand(n, -1, -1)
                k = p.shape[1]
                x = torch.cat([x[:, :prompt_start], p, x[:, prompt_start + k:]], dim=1)
            x = block(x, attn_mask=mask)
        x = self.ln_final(x)
        x = x[torch.arange(n, device=x.device), eot]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection

    def encode_tokens(self, token_ids: torch.Tensor, truncate: bool = True) -> torch.Tensor:
        """Plain (un-prompted) text features for token ids, with the exact truncation."""
        return self.forward(self.embed(token_ids), token_ids, truncate=truncate)
