"""Zero-shot CLIP with CoOp's per-dataset templates (and the 7-template ensemble variant)."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from dapt.config import CN, register_config
from dapt.methods.base import PromptMethod
from dapt.utils.registry import METHOD_REGISTRY

logger = logging.getLogger(__name__)

# CoOp's hand-crafted prompt per dataset.
CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
DEFAULT_TEMPLATE = "a photo of a {}."

# The 7 ImageNet templates CoOp's ZeroshotCLIP2 averages with the dataset's own.
ENSEMBLE_TEMPLATES = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


@register_config
def add_zsclip_config(cfg):
    cfg.TRAINER.ZSCLIP = CN()
    cfg.TRAINER.ZSCLIP.TEMPLATE = ""  # template with one "{}"; "" = CoOp's template for the dataset
    cfg.TRAINER.ZSCLIP.PREC = "fp32"  # fp32 | fp16 | amp | bf16 (autocast on CUDA)


def template_for(dataset_name: str, override: str = "") -> str:
    if override:
        if "{}" not in override:
            raise ValueError(f"TRAINER.ZSCLIP.TEMPLATE '{override}' must contain '{{}}' for the class name")
        return override
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


@METHOD_REGISTRY.register(name="ZeroshotCLIP")
class ZeroshotMethod(PromptMethod):
    """Frozen CLIP; the class text features are computed once."""
    config_node = "ZSCLIP"


    templates_ensemble = False

    def __init__(self, cfg, classnames, clip_model, tokenizer):
        super().__init__(cfg, classnames, clip_model, tokenizer)
        templates = [template_for(cfg.DATASET.NAME, cfg.TRAINER.ZSCLIP.TEMPLATE)]
        if self.templates_ensemble:
            templates = templates + ENSEMBLE_TEMPLATES
        feats = 0
        for t in templates:
            prompts = [t.format(c) for c in self.classnames]
            logger.info("Prompt example: %s", prompts[0])
            feats = feats + F.normalize(self.frozen_text_features(prompts), dim=-1)
        self.register_buffer("text_features", feats / len(templates), persistent=False)

    def encode_text(self) -> torch.Tensor:
        return self.text_features


@METHOD_REGISTRY.register(name="ZeroshotCLIP2")
class ZeroshotEnsembleMethod(ZeroshotMethod):
    config_node = "ZSCLIP"

    templates_ensemble = True
