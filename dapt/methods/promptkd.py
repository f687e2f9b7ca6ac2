"""PromptKD: unsupervised prompt distillation from a PromptSRC teacher (Li et al., CVPR 2024).

What upstream (zhengli97/PromptKD, ``trainers/promptkd.py``) computes, with the widths taken from
the two backbones instead of hard-coded 512 -> 768:
- teacher: a trained PromptSRC model, frozen and in eval mode; its L2-normalised class text
  features over all classes are constant, so they are computed once here (upstream recomputes
  them at every step); teacher logits use the teacher's own logit scale;
- student: deep visual prompts only (as VPT / IVLP's image side), then a projector
  Linear(E_s -> E_t) -> BatchNorm1d(E_t) -> ReLU -> Linear(E_t -> E_t) from the student's
  feature width to the teacher's (upstream writes it with 1x1 convolutions), L2-normalised;
  student logits = student scale * f_s . teacher text;
- loss = KD_WEIGHT * T^2 * sum_b sum_c p_t (log p_t - log p_s) / (B * C), p = softmax(logits / T).
  No labels are used.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dapt.methods.base import PromptMethod
from dapt.methods.prompts import PromptSlots
from dapt.methods.promptsrc import PromptSRCMethod
from dapt.models.image_encoder import PromptedImageEncoder
from dapt.utils.registry import METHOD_REGISTRY

logger = logging.getLogger(__name__)


class FeatureProjector(nn.Module):
    """Upstream's ``Feature_Trans_Module_two_layer`` as linear layers; ``conv1.<i>`` keeps its
    state-dict names (``conv1.0`` / ``conv1.3`` weights are (out, in) here, (out, in, 1, 1) there)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU(inplace=True),
                                   nn.Linear(out_dim, out_dim))
        # the default init of upstream's 1x1 convolutions (same fan-in as these linear layers)
        for i in (0, 3):
            conv = nn.Conv2d(self.conv1[i].in_features, self.conv1[i].out_features, 1)
            with torch.no_grad():
                self.conv1[i].weight.copy_(conv.weight.flatten(1))
                self.conv1[i].bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)


@METHOD_REGISTRY.register(name="PromptKD")
class PromptKDMethod(PromptMethod):
    """The PromptKD student; ``teacher`` is a PromptSRC method (frozen here), or set later with
    ``set_teacher`` (the trainer loads it from TRAINER.PROMPTKD.TEACHER_CKPT)."""

    config_node = "PROMPTKD"

    def __init__(self, cfg, classnames: Sequence[str], clip_model, tokenizer,
                 teacher: Optional[PromptSRCMethod] = None):
        super().__init__(cfg, classnames, clip_model, tokenizer)
        c = cfg.TRAINER.PROMPTKD
        self.kd_weight = float(c.KD_WEIGHT)
        self.temperature = float(c.TEMPERATURE)
        if float(c.CE_WEIGHT) != 0.0:
            logger.warning("TRAINER.PROMPTKD.CE_WEIGHT is %s, but PromptKD trains without labels and upstream never "
                           "reads this key: it is ignored", c.CE_WEIGHT)
        if int(c.PROJECT_LAYER) != 2:
            logger.warning("TRAINER.PROMPTKD.PROJECT_LAYER is %s, but upstream's projector always has two layers "
                           "(the key is never read): it is ignored", c.PROJECT_LAYER)
        self.image_tower = PromptedImageEncoder(clip_model.visual)
        self.image_encoder = PromptSlots(c.N_CTX_VISION, self.image_tower.width, c.PROMPT_DEPTH_VISION,
                                         self.image_tower.num_layers)
        self.VPT_image_trans = None
        self.teacher = None
        if teacher is not None:
            self.set_teacher(teacher)

    def set_teacher(self, teacher: PromptSRCMethod) -> None:
        """Freeze ``teacher`` and build the projector to its feature width."""
        if not isinstance(teacher, PromptSRCMethod):
            raise TypeError(f"the PromptKD teacher must be a PromptSRC method, got {type(teacher).__name__}")
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher.eval()
        self.teacher = teacher
        device = self.clip_model.positional_embedding.device
        in_dim, out_dim = self.image_tower.output_dim, teacher.image_tower.output_dim
        if self.VPT_image_trans is None or self.VPT_image_trans.conv1[3].out_features != out_dim:
            self.VPT_image_trans = FeatureProjector(in_dim, out_dim).to(device)
        logger.info("PromptKD: student features %d -> teacher features %d, %d teacher classes", in_dim, out_dim,
                    len(teacher.classnames))

    # ------------------------------------------------------------ teacher
    def _need_teacher(self) -> PromptSRCMethod:
        if self.teacher is None:
            raise RuntimeError("PromptKD has no teacher: pass teacher= or call set_teacher()")
        return self.teacher

    def teacher_text_features(self) -> torch.Tensor:
        """The teacher's L2-normalised class text features (C, E_t), computed once per device."""
        teacher = self._need_teacher()
        device = teacher.clip_model.positional_embedding.device
        cache = self.__dict__.setdefault("_teacher_text_cache", {})
        key = (id(teacher), tuple(teacher.classnames), device)
        if key not in cache:
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                cache.clear()
                cache[key] = F.normalize(teacher.encode_text().float(), dim=-1)
        return cache[key]

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Teacher logits with the teacher's own logit scale (no gradient)."""
        teacher = self._need_teacher()
        with torch.no_grad():
            feats = F.normalize(teacher.encode_image(images).float(), dim=-1)
            return teacher.logit_scale.float() * feats @ self.teacher_text_features().t()

    # ------------------------------------------------------------ student
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Projected student features (B, E_t), not normalised."""
        self._need_teacher()
        feats = self.image_tower(images, self.image_encoder.first(), self.image_encoder.deep())
        return self.VPT_image_trans(feats.float())

    def encode_text(self) -> torch.Tensor:
        """The class 'text features' of the student are the teacher's (constant)."""
        return self.teacher_text_features()

    def losses(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None, image_features: Optional[torch.Tensor] = None,
               text_features: Optional[torch.Tensor] = None) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """{"kd": KD_WEIGHT * T^2-scaled KL(teacher || student) / (B * C)} and the student logits;
        ``labels`` are not used (unsupervised distillation)."""
        if image_features is None:
            image_features = self.encode_image(images)
        if text_features is None:
            text_features = self.teacher_text_features()
        logits = self.logit_scale.float() * F.normalize(image_features.float(), dim=-1) @ \
            F.normalize(text_features.float(), dim=-1).detach().t()
        t = self.temperature
        tea = self.teacher_logits(images)
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(tea / t, dim=1), reduction="sum") * (t * t) / logits.numel()
        return {"kd": self.kd_weight * kl}, logits

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen: always eval behaviour
        return self
