"""The common interface of every prompt-tuning method.

A method (``PromptMethod``) wraps a frozen open_clip CLIP and adds learnable prompts. It exposes
``encode_image``, ``encode_text``, ``logits``, ``losses`` and its learnable parameters; DAPT and
the trainers only talk to this interface, so a new method is one module with one subclass plus
its config node, registered with ``@METHOD_REGISTRY.register()`` (the trainer that drives it is a
``PromptTrainer`` subclass naming it in ``method_class``, see ``dapt.trainers``).
"""
from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dapt.models.text_encoder import PromptedTextEncoder

logger = logging.getLogger(__name__)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """Cross-entropy, or the multi-label soft-margin loss for multi-hot targets."""
    if multi_label:
        return F.multilabel_soft_margin_loss(logits, labels.float())
    return F.cross_entropy(logits, labels)


class PromptMethod(nn.Module):
    """A CLIP model with learnable prompts.

    ``config_node`` names the method's node under TRAINER (e.g. "COOP", holding PREC).
    Subclasses create their learnable modules in ``__init__`` and implement ``encode_text``
    (and ``encode_image`` when they prompt the image side). All CLIP weights stay frozen.
    """

    config_node = ""

    def __init__(self, cfg, classnames: Sequence[str], clip_model: nn.Module, tokenizer):
        super().__init__()
        self.cfg = cfg
        self.clip_model = clip_model
        self.tokenizer = tokenizer
        self.text_encoder = PromptedTextEncoder(clip_model)
        self.classnames = [c.replace("_", " ") for c in classnames]
        self.multi_label = False
        for p in self.clip_model.parameters():
            p.requires_grad_(False)

    # -------------------------------------------------------------- interface
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Image features (B, E), not normalised."""
        return self.clip_model.encode_image(images)

    def encode_text(self) -> torch.Tensor:
        """Class text features (C, E) for ``self.classnames``, not normalised."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip_model.logit_scale.exp()

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """CLIP logits: scale * cosine similarity."""
        image_features = F.normalize(image_features, dim=-1)
        text_features = F.normalize(text_features, dim=-1)
        return self.logit_scale * image_features @ text_features.t()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(self.encode_image(images), self.inference_text())

    # -------------------------------------------------------------- evaluation cache
    def inference_text(self) -> torch.Tensor:
        """The class text features for inference: ``encode_text()``, computed once per
        ``text_cache()`` block (one evaluation) and reused for every batch in it."""
        return self.cached_text("classes", self.encode_text)

    def cached_text(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``compute()``, kept under ``key`` while a ``text_cache()`` block is open (else computed every call)."""
        cache = self.__dict__.get("_eval_text_cache")
        if cache is None:
            return compute()
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    @contextlib.contextmanager
    def text_cache(self) -> Iterator[None]:
        """Within the block (an evaluation: no gradient, weights fixed), text features that do not
        depend on the image are computed once. A method whose class texts depend on the image
        (CoCoOp) does not use ``inference_text`` and is unaffected."""
        if torch.is_grad_enabled():
            raise RuntimeError("text_cache() is for evaluation: enter it under torch.no_grad()")
        outer = self.__dict__.get("_eval_text_cache")
        self.__dict__["_eval_text_cache"] = {} if outer is None else outer
        try:
            yield
        finally:
            self.__dict__["_eval_text_cache"] = outer

    def losses(self, images: torch.Tensor, labels: torch.Tensor, image_features: Optional[torch.Tensor] = None,
               text_features: Optional[torch.Tensor] = None) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """The method's own training terms, already weighted, and the logits of ``images``.

        ``image_features``: the prompted features of ``images`` when the caller already computed
        them (DAPT passes the I part of its single batched [I; I_f; I_b] pass); else
        ``self.encode_image(images)``. ``text_features``: the prompted text features to classify
        against when the caller already computed them, else ``self.encode_text()``; their first
        C rows are the classes, rows after them (DAPT.BG.FG_EXTRA under the official config) are
        extra negative columns of the softmax: a term about the classes alone uses
        ``text_features[:self.num_classes]``. Frozen no-grad passes a method needs are computed
        from ``images`` inside. The trainer sums the dict; other objectives (DAPT) add their own
        terms, so a method never assumes it is the only one.
        """
        if image_features is None:
            image_features = self.encode_image(images)
        if text_features is None:
            text_features = self.encode_text()
        logits = self.logits(image_features, text_features)
        return {"cls": classification_loss(logits, labels, self.multi_label)}, logits

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def text_layer_prompts(self) -> Optional[List[Optional[torch.Tensor]]]:
        """Deep text prompts per layer (entry i feeds block i; MaPLe / IVLP), or None."""
        return None

    def encode_texts(self, texts: List[str]) -> torch.Tensor:
        """Features of whole sentences through the prompted text tower: the first-layer tokens are
        the sentence's frozen embeddings, deeper layers get the method's deep text prompts."""
        layer_prompts = self.text_layer_prompts()
        if layer_prompts is None:  # nothing learnable reaches them: constant, computed once
            return self.frozen_text_features(texts)
        ids = self.tokenize(texts)
        return self.text_encoder(self.text_encoder.embed(ids), ids, layer_prompts=layer_prompts)

    def encode_text_with_context(self, names: List[str]) -> torch.Tensor:
        """Features of ``names`` with the method's learned first-layer context in front of them
        (e.g. background classes prompted like the foreground classes)."""
        raise NotImplementedError(f"{type(self).__name__} has no shared first-layer text context")

    def learnable_parameters(self) -> "OrderedDict[str, nn.Parameter]":
        return OrderedDict((n, p) for n, p in self.named_parameters() if p.requires_grad)

    # -------------------------------------------------------------- helpers
    def tokenize(self, texts: List[str]) -> torch.Tensor:
        """Token ids of ``texts`` on the model's device; kept per list of texts (the same sentences,
        e.g. DAPT's background prompts, are encoded at every step)."""
        device = self.clip_model.positional_embedding.device
        key = (tuple(texts), device)
        cache = self.__dict__.setdefault("_token_cache", {})
        if key not in cache:
            if len(cache) >= 64:
                cache.clear()
            cache[key] = self.tokenizer(list(texts)).to(device)
        return cache[key]

    def frozen_text_features(self, texts: List[str]) -> torch.Tensor:
        """Un-prompted CLIP text features (exact truncation, fp32), not normalised; computed once
        per list of sentences and device (the CLIP weights never change)."""
        device = self.clip_model.positional_embedding.device
        key = (tuple(texts), device)
        cache = self.__dict__.setdefault("_frozen_text_cache", {})
        if key not in cache:
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                cache[key] = self.text_encoder.encode_tokens(self.tokenize(list(texts))).float()
        return cache[key]

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip_model.eval()  # the frozen encoders never switch to training behaviour
        return self
