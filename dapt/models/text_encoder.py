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
from torch.utils.checkpoint import checkpoint

from dapt.models.blocks import LayoutTracker



def max_token_length(token_ids: torch.Tensor, eot: torch.Tensor) -> int:
    """max(EOT) + 1 of ``token_ids``: one host read per token-id tensor, kept on the tensor (the class
    and sentence token ids are fixed buffers; an in-place change bumps its version and recomputes),
    so a training step does not wait for the device to read it."""
    cached = getattr(token_ids, "_dapt_max_eot", None)
    if cached is not None and cached[0] == token_ids._version:
        return cached[1]
    need = int(eot.max().item()) + 1
    try:
        token_ids._dapt_max_eot = (token_ids._version, need)
    except (AttributeError, RuntimeError):  # a tensor that takes no attributes: read every time
        pass
    return need

class PromptedTextEncoder(nn.Module):
    """Encode token *embeddings* (so prompts can be learnable vectors) into CLIP text features.

    The module borrows the frozen parts of an ``open_clip.CLIP``; it owns no parameters.
    """

    def __init__(self, clip_model: nn.Module, chunk_size: Optional[int] = None):
        super().__init__()
        # default: MODEL.TEXT_CHUNK_SIZE, which build_clip_from_cfg records on the model
        self.set_chunking(getattr(clip_model, "text_chunk_size", 0) if chunk_size is None else chunk_size)
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.token_embedding = clip_model.token_embedding
        self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)
        pool = getattr(clip_model, "text_pool_type", "argmax")
        if pool != "argmax":
            raise ValueError(f"text pooling '{pool}' is not supported; prompt tuning needs CLIP's EOT (argmax) pooling")

    def set_chunking(self, chunk_size: int) -> None:
        """Run the tower over at most ``chunk_size`` prompts at a time, each chunk with activation
        checkpointing when autograd records (MODEL.TEXT_CHUNK_SIZE; 0 = all prompts at once).
        Same features and gradients; bounds the memory of prompting many classes (ImageNet)."""
        chunk_size = int(chunk_size)
        if chunk_size < 0:
            raise ValueError(f"MODEL.TEXT_CHUNK_SIZE must be >= 0 (0 = off); got {chunk_size}")
        self.chunk_size = chunk_size

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
            need = max_token_length(token_ids, eot)
            if layer_prompts is not None:
                deep = [p.shape[-2] for p in layer_prompts if p is not None]
                if deep:
                    need = max(need, prompt_start + max(deep))
            length = min(length, need)
        n = prompts.shape[0]
        chunk = self.chunk_size
        if chunk <= 0 or n <= chunk:
            return self._encode(prompts[:, :length], eot, layer_prompts, prompt_start)
        # class chunks; with autograd each chunk is checkpointed (its activations are recomputed in
        # backward), so the tower's activation memory is that of one chunk, not of all N prompts
        layer_prompts = list(layer_prompts) if layer_prompts is not None else []
        per_prompt = [i for i, p in enumerate(layer_prompts) if p is not None and p.dim() == 3]
        outs = []
        for s in range(0, n, chunk):
            lp = list(layer_prompts)
            for i in per_prompt:
                lp[i] = layer_prompts[i][s:s + chunk]
            args = (prompts[s:s + chunk, :length], eot[s:s + chunk], prompt_start, len(lp), *lp)
            if torch.is_grad_enabled():
                outs.append(checkpoint(self._encode_flat, *args, use_reentrant=False))
            else:
                outs.append(self._encode_flat(*args))
        return torch.cat(outs)

    def _encode_flat(self, x, eot, prompt_start, n_layers, *layer_prompts):
        return self._encode(x, eot, list(layer_prompts[:n_layers]) or None, prompt_start)

    def _encode(self, prompts: torch.Tensor, eot: torch.Tensor,
                layer_prompts: Optional[Sequence[Optional[torch.Tensor]]], prompt_start: int) -> torch.Tensor:
        """The blocks, pooling and projection on prompts already cut to the length to run."""
        length = prompts.shape[1]
        x = prompts + self.positional_embedding[:length].to(prompts.dtype)
        mask = self.attn_mask[:length, :length] if self.attn_mask is not None else None
        n = x.shape[0]
        state = LayoutTracker(x)  # blocks run sequence-first where that changes nothing (models/blocks.py)
        for i, block in enumerate(self.transformer.resblocks):
            if layer_prompts is not None and i > 0 and i < len(layer_prompts) and layer_prompts[i] is not None:
                p = layer_prompts[i].to(x.dtype)
                if p.dim() == 2:
                    p = p.unsqueeze(0).expand(n, -1, -1)
                state.splice(prompt_start, prompt_start + p.shape[1], p)
            state.run(block, attn_mask=mask)
        x = self.ln_final(state.batch_first())
        x = x[torch.arange(n, device=x.device), eot]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection

    def encode_tokens(self, token_ids: torch.Tensor, truncate: bool = True) -> torch.Tensor:
        """Plain (un-prompted) text features for token ids, with the exact truncation."""
        return self.forward(self.embed(token_ids), token_ids, truncate=truncate)
