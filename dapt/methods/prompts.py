"""Prompt learners shared by several methods.

- ``ContextPromptLearner``: a learnable context in front of every class name (IVLP, MaPLe, CoCoOp),
  with ``ContextTextMixin`` the text side of a method built on it;
- ``PromptSlots``: per-layer visual / text prompt tokens under upstream's state-dict names (VPT, IVLP).
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)


class ContextPromptLearner(nn.Module):
    """A shared context ``ctx`` in front of every class name: "SOS ctx {rest of the prompt} EOS".

    ``init_rule`` is upstream's: "first_n" (MaPLe / IVLP: with CTX_INIT and n_ctx <= 4 the
    context is the embedding of CTX_INIT's first n_ctx tokens and the prompt text stays
    "{CTX_INIT} {class}.") or "all_words" (CoOp / CoCoOp: n_ctx becomes CTX_INIT's word count).
    """

    def __init__(self, classnames: Sequence[str], text_encoder, tokenizer, n_ctx: int, ctx_init: str,
                 init_rule: str = "first_n"):
        super().__init__()
        dim = text_encoder.width
        device = text_encoder.positional_embedding.device
        ctx_init = ctx_init.replace("_", " ") if ctx_init else ""
        use_words = bool(ctx_init) and (init_rule == "all_words" or n_ctx <= 4)
        if use_words:
            if init_rule == "all_words":
                n_ctx = len(ctx_init.split(" "))
            ids = tokenizer([ctx_init]).to(device)
            with torch.no_grad():
                ctx_vectors = text_encoder.embed(ids)[0, 1:1 + n_ctx].clone().float()
            prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.empty(n_ctx, dim)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        logger.info('Initial text context: "%s" (%d learnable tokens)', prompt_prefix, n_ctx)
        self.ctx = nn.Parameter(ctx_vectors.to(device))
        self.n_ctx = n_ctx
        self.prompt_prefix = prompt_prefix
        self._text_encoder = [text_encoder]  # not a submodule: borrowed, frozen
        self._tokenizer = tokenizer
        ids, prefix, suffix = self._frozen_parts(classnames, device)
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("token_prefix", prefix, persistent=False)
        self.register_buffer("token_suffix", suffix, persistent=False)
        self._cache: Dict[tuple, tuple] = {}

    def _frozen_parts(self, names: Sequence[str], device):
        texts = [f"{self.prompt_prefix} {n.replace('_', ' ')}." for n in names]
        ids = self._tokenizer(texts).to(device)
        with torch.no_grad():
            emb = self._text_encoder[0].embed(ids)
        return ids, emb[:, :1].clone(), emb[:, 1 + self.n_ctx:].clone()

    def assemble(self, ctx: torch.Tensor, prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        """[prefix, ctx, suffix] along the tokens; ctx (n, D) is shared, (N, n, D) per prompt."""
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(prefix.shape[0], -1, -1)
        return torch.cat([prefix, ctx, suffix], dim=1)

    def forward(self) -> torch.Tensor:
        """Class prompts (C, L, D) with the learnable context in place."""
        return self.assemble(self.ctx, self.token_prefix, self.token_suffix)

    def for_names(self, names: Sequence[str]):
        """(token ids, prompts) for other names with the same context and template."""
        device = self.token_prefix.device
        key = (tuple(names), device)
        if key not in self._cache:
            self._cache[key] = self._frozen_parts(names, device)
        ids, prefix, suffix = self._cache[key]
        return ids, self.assemble(self.ctx, prefix, suffix)


class ContextTextMixin:
    """Text side of a method whose ``prompt_learner`` is a ``ContextPromptLearner`` and whose deeper
    text prompts come from ``text_layer_prompts()`` (IVLP, MaPLe)."""

    def encode_text(self) -> torch.Tensor:
        pl = self.prompt_learner
        return self.text_encoder(pl(), pl.token_ids, layer_prompts=self.text_layer_prompts())

    def encode_text_with_context(self, names: List[str]) -> torch.Tensor:
        ids, prompts = self.prompt_learner.for_names(list(names))
        return self.text_encoder(prompts, ids, layer_prompts=self.text_layer_prompts())


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
