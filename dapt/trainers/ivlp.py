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
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from dapt.config import CN, register_config
from dapt.engine.build import TRAINER_REGISTRY
from dapt.models.image_encoder import PromptedImageEncoder
from dapt.trainers.base import PromptMethod, PromptTrainer
from dapt.trainers.vpt import PromptSlots

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


class IVLPMethod(ContextTextMixin, PromptMethod):
    def __init__(self, cfg, classnames, clip_model, tokenizer):
        super().__init__(cfg, classnames, clip_model, tokenizer)
        c = cfg.TRAINER.IVLP
        if c.PROMPT_DEPTH_TEXT < 1:
            raise ValueError("TRAINER.IVLP.PROMPT_DEPTH_TEXT must be >= 1; use the VPT trainer for vision-only prompts")
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



class RenamedStateMixin:
    """Write and read checkpoints under upstream's names where ours differ (``aliases``:
    internal prefix -> upstream prefix)."""

    aliases: Dict[str, str] = {}

    def _rename(self, key: str, to_upstream: bool) -> str:
        for ours, theirs in self.aliases.items():
            src, dst = (ours, theirs) if to_upstream else (theirs, ours)
            if key.startswith(src):
                return dst + key[len(src):]
        return key

    def get_model_state(self):
        return OrderedDict((self._rename(k, True), v) for k, v in super().get_model_state().items())

    def load_model_state(self, state):
        # upstream checkpoints hold the whole model; only renamed prompt keys are translated
        super().load_model_state({self._rename(k, False): v for k, v in state.items()})


@TRAINER_REGISTRY.register()
class IVLP(RenamedStateMixin, PromptTrainer):
    """Independent (uncoupled) deep vision and language prompts."""

    method_class = IVLPMethod
    config_node = "IVLP"
    checkpoint_name = "VLPromptLearner"
    aliases = {"text_prompts.": "text_encoder."}
