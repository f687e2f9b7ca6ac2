"""PromptSRC: IVLP prompts regularised towards the frozen CLIP (Khattak et al., ICCV 2023).

What upstream (muzairkhattak/PromptSRC, ``trainers/promptsrc.py``) computes, here for any open_clip
ViT backbone:
- prompts: IVLP's (deep text context after SOS, deep visual tokens after the patches);
- loss = CE(prompted logits, labels)
  + TEXT_LOSS_WEIGHT * mean |normalised prompted class text - frozen text|
  + IMAGE_LOSS_WEIGHT * mean |normalised prompted image - normalised frozen image|
  + sum_b KL(zero-shot || prompted) / (B * C)
  where the frozen text of a class is the plain-CLIP feature averaged over the 60 ImageNet
  templates below (averaged, then L2-normalised), the frozen image feature is the plain CLIP
  feature of the same batch, and the zero-shot logits are scale * frozen image . frozen text.
Gaussian prompt aggregation over epochs is the trainer's part (``dapt.trainers.promptsrc``).
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from dapt.methods.base import classification_loss
from dapt.methods.ivlp import IVLPMethod
from dapt.utils.registry import METHOD_REGISTRY

logger = logging.getLogger(__name__)

# The 60 templates PromptSRC averages its frozen text features over, in its order: OpenAI's
# ImageNet prompt-engineering templates (all 60 are among open_clip's 80).
PROMPTSRC_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
)


@METHOD_REGISTRY.register(name="PromptSRC")
class PromptSRCMethod(IVLPMethod):
    """IVLP prompts (``TRAINER.<node>`` keys) with PromptSRC's self-regularising loss terms."""

    config_node = "PROMPTSRC"

    def __init__(self, cfg, classnames: Sequence[str], clip_model, tokenizer):
        super().__init__(cfg, classnames, clip_model, tokenizer)  # IVLP's prompts, from TRAINER.PROMPTSRC
        c = getattr(cfg.TRAINER, self.config_node)
        self.text_loss_weight = float(getattr(c, "TEXT_LOSS_WEIGHT", 25.0))
        self.image_loss_weight = float(getattr(c, "IMAGE_LOSS_WEIGHT", 10.0))

    # ------------------------------------------------------------ frozen CLIP
    def template_text_features(self, classnames: Optional[Sequence[str]] = None) -> torch.Tensor:
        """Frozen CLIP text features (C, E) of ``classnames`` (default: the method's), averaged over
        PROMPTSRC_TEMPLATES and then L2-normalised; computed once per class list and device."""
        names = tuple(n.replace("_", " ") for n in (classnames if classnames is not None else self.classnames))
        device = self.clip_model.positional_embedding.device
        cache = self.__dict__.setdefault("_template_text_cache", {})
        key = (names, device)
        if key not in cache:
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                texts = [t.replace("{}", n) for t in PROMPTSRC_TEMPLATES for n in names]
                feats = self.text_encoder.encode_tokens(self.tokenize(texts)).float()
                feats = feats.view(len(PROMPTSRC_TEMPLATES), len(names), -1).mean(dim=0)  # average, then normalise
                cache[key] = F.normalize(feats, dim=-1)
            logger.info("Frozen text features: %d classes x %d templates", len(names), len(PROMPTSRC_TEMPLATES))
        return cache[key]

    def frozen_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Plain CLIP image features of ``images``, L2-normalised, without gradient."""
        with torch.no_grad():
            return F.normalize(self.clip_model.encode_image(images).float(), dim=-1)

    # ------------------------------------------------------------ loss
    def losses(self, images: torch.Tensor, labels: torch.Tensor, image_features: Optional[torch.Tensor] = None,
               text_features: Optional[torch.Tensor] = None) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """{"cls", "scl_text", "scl_image", "scl_kl"} (weighted) and the prompted logits.

        ``text_features`` may carry rows after the C classes (DAPT.BG.FG_EXTRA, official DAPT): they
        join the cross-entropy's softmax as extra negatives; scl_text and scl_kl use the class rows
        and columns only (the frozen CLIP has no counterpart for the extra rows)."""
        if image_features is None:
            image_features = self.encode_image(images)
        if text_features is None:
            text_features = self.encode_text()
        img = F.normalize(image_features.float(), dim=-1)
        txt = F.normalize(text_features.float(), dim=-1)
        scale = self.logit_scale.float()
        logits = scale * img @ txt.t()
        # rows after the first C (DAPT.BG.FG_EXTRA) are extra negatives of the classification only: the
        # self-regularising terms compare the classes with their frozen counterparts
        c = self.num_classes
        frozen_txt = self.template_text_features()
        frozen_img = self.frozen_image_features(images)
        zs_logits = scale.detach() * frozen_img @ frozen_txt.t()
        cls_logits = logits[:, :c]
        # KL(zero-shot || prompted) over the classes, summed over the batch and classes, / (B * C) as upstream
        kl = F.kl_div(F.log_softmax(cls_logits, dim=1), F.log_softmax(zs_logits, dim=1), reduction="sum",
                      log_target=True) / cls_logits.numel()
        terms = {
            "cls": classification_loss(logits, labels, self.multi_label),
            "scl_text": self.text_loss_weight * F.l1_loss(txt[:c], frozen_txt, reduction="mean"),
            "scl_image": self.image_loss_weight * F.l1_loss(img, frozen_img, reduction="mean"),
            "scl_kl": kl,
        }
        return terms, logits
