"""CoOp (Zhou et al., IJCV 2022): learnable context vectors in front of (or around) the class name.

Computes what upstream CoOp computes: the same context initialisation (the embedding of
CTX_INIT's words, or N(0, 0.02) when empty; class-specific only without CTX_INIT), the same
prompt "X X ... X {classname}." and the same end / middle / front placement of the class tokens.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dapt.config import CN, register_config
from dapt.methods.base import PromptMethod
from dapt.utils.registry import METHOD_REGISTRY


@register_config
def add_coop_config(cfg):
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of context vectors
    cfg.TRAINER.COOP.CSC = False  # class-specific context (ignored when CTX_INIT is set, as upstream)
    cfg.TRAINER.COOP.CTX_INIT = ""  # initialisation words, e.g. "a photo of a"; "" = random N(0, 0.02)
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (autocast on CUDA; CPU runs fp32)
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end | middle | front


class CoOpPromptLearner(nn.Module):
    """Context vectors plus the frozen token embeddings of SOS and of "{classname}. EOS"."""

    def __init__(self, classnames, text_encoder, tokenizer, n_ctx: int, ctx_init: str, csc: bool, position: str):
        super().__init__()
        if position not in ("end", "middle", "front"):
            raise ValueError(f"TRAINER.COOP.CLASS_TOKEN_POSITION '{position}' must be end, middle or front")
        dim = text_encoder.width
        device = text_encoder.positional_embedding.device
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            ids = tokenizer([ctx_init]).to(device)
            with torch.no_grad():
                ctx_vectors = text_encoder.embed(ids)[0, 1:1 + n_ctx].clone()
            prefix_text = ctx_init
        else:
            ctx_vectors = torch.empty(len(classnames), n_ctx, dim) if csc else torch.empty(n_ctx, dim)
            nn.init.normal_(ctx_vectors, std=0.02)
            prefix_text = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(ctx_vectors.to(device))
        self.n_ctx = n_ctx
        self.position = position
        self.name_lens = [len(tokenizer.encode(name)) if hasattr(tokenizer, "encode") else len(tokenizer.tokenizer.encode(name))
                          for name in classnames]
        prompts = [f"{prefix_text} {name}." for name in classnames]
        token_ids = tokenizer(prompts).to(device)
        with torch.no_grad():
            emb = text_encoder.embed(token_ids)
        self.register_buffer("token_ids", token_ids, persistent=False)
        self.register_buffer("token_prefix", emb[:, :1].clone(), persistent=False)
        self.register_buffer("token_suffix", emb[:, 1 + n_ctx:].clone(), persistent=False)
        self.prompt_prefix = prefix_text

    def forward(self) -> torch.Tensor:
        ctx = self.ctx
        n_cls = self.token_prefix.shape[0]
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        rows = []
        half = self.n_ctx // 2
        for i in range(n_cls):
            k = self.name_lens[i]
            cls_tok, rest = suffix[i:i + 1, :k], suffix[i:i + 1, k:]
            if self.position == "middle":
                rows.append(torch.cat([prefix[i:i + 1], ctx[i:i + 1, :half], cls_tok, ctx[i:i + 1, half:], rest], dim=1))
            else:
                rows.append(torch.cat([prefix[i:i + 1], cls_tok, ctx[i:i + 1], rest], dim=1))
        return torch.cat(rows, dim=0)


@METHOD_REGISTRY.register(name="CoOp")
class CoOpMethod(PromptMethod):
    config_node = "COOP"

    def __init__(self, cfg, classnames, clip_model, tokenizer):
        super().__init__(cfg, classnames, clip_model, tokenizer)
        c = cfg.TRAINER.COOP
        self.prompt_learner = CoOpPromptLearner(self.classnames, self.text_encoder, tokenizer, c.N_CTX, c.CTX_INIT,
                                                c.CSC, c.CLASS_TOKEN_POSITION)

    def encode_text(self) -> torch.Tensor:
        return self.text_encoder(self.prompt_learner(), self.prompt_learner.token_ids)

    def encode_text_with_context(self, names):
        """The learned (shared) context in front of other class names, at the end position."""
        pl = self.prompt_learner
        if pl.ctx.dim() != 2:
            raise ValueError("class-specific context (TRAINER.COOP.CSC True) cannot prompt other class names")
        key = tuple(names)
        cache = self.__dict__.setdefault("_context_cache", {})
        if key not in cache:
            ids = self.tokenize([f"{pl.prompt_prefix} {n.replace('_', ' ')}." for n in names])
            with torch.no_grad():
                emb = self.text_encoder.embed(ids)
            cache[key] = (ids, emb[:, :1], emb[:, 1 + pl.n_ctx:])
        ids, prefix, suffix = cache[key]
        ctx = pl.ctx.unsqueeze(0).expand(len(names), -1, -1)
        return self.text_encoder(torch.cat([prefix, ctx, suffix], dim=1), ids)
