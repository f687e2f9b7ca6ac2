"""Image transforms built from ``cfg.INPUT`` with Dassl's semantics.

Train: the transforms named in ``INPUT.TRANSFORMS`` in Dassl's fixed order (a plain resize to
``INPUT.SIZE`` first when neither random_crop nor random_resized_crop is asked for, or when
"resize" is named).
Test: resize the shorter side to ``max(INPUT.SIZE)``, center crop ``INPUT.SIZE``, to tensor, and
normalize if "normalize" is among ``INPUT.TRANSFORMS``.
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import (CenterCrop, ColorJitter, Compose, GaussianBlur, InterpolationMode, Normalize,
                                    RandomApply, RandomCrop, RandomGrayscale, RandomHorizontalFlip,
                                    RandomResizedCrop, Resize, ToTensor)

CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation mean
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)  # OpenAI CLIP's normalisation std

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}
_PIL_MODES = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}

AVAILABLE_TRANSFORMS = (
    "resize", "random_flip", "random_resized_crop", "normalize", "instance_norm", "random_crop", "random_translation",
    "center_crop", "cutout", "colorjitter", "randomgrayscale", "gaussian_blur", "gaussian_noise",
)


class Random2DTranslation:
    """With probability ``p``: enlarge by 1/8 and crop back to (height, width) at a random spot;
    otherwise resize to (height, width) (Dassl)."""

    def __init__(self, height: int, width: int, p: float = 0.5, interpolation=Image.BILINEAR):
        self.height, self.width, self.p, self.interpolation = height, width, p, interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.uniform(0, 1) > self.p:
            return img.resize((self.width, self.height), self.interpolation)
        nw, nh = int(round(self.width * 1.125)), int(round(self.height * 1.125))
        big = img.resize((nw, nh), self.interpolation)
        x1 = int(round(random.uniform(0, nw - self.width)))
        y1 = int(round(random.uniform(0, nh - self.height)))
        return big.crop((x1, y1, x1 + self.width, y1 + self.height))


class Cutout:
    """Zero ``n_holes`` square patches of side ``length`` in a CHW tensor (DeVries & Taylor)."""

    def __init__(self, n_holes: int = 1, length: int = 16):
        self.n_holes, self.length = n_holes, length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1], img.shape[2]
        mask = np.ones((h, w), np.float32)
        for _ in range(self.n_holes):
            y, x = np.random.randint(h), np.random.randint(w)
            y1, y2 = np.clip(y - self.length // 2, 0, h), np.clip(y + self.length // 2, 0, h)
            x1, x2 = np.clip(x - self.length // 2, 0, w), np.clip(x + self.length // 2, 0, w)
            mask[y1:y2, x1:x2] = 0.0
        return img * torch.from_numpy(mask).expand_as(img)


class GaussianNoise:
    """With probability ``p`` add N(mean, std) noise to a tensor."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5):
        self.mean, self.std, self.p = mean, std, p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean


class InstanceNormalization:
    """Normalise each channel of a CHW tensor to zero mean and unit variance."""

    def __init__(self, eps: float = 1e-8):
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        c = img.shape[0]
        flat = img.reshape(c, -1)
        mean = flat.mean(1).view(c, 1, 1)
        std = flat.std(1).view(c, 1, 1)
        return (img - mean) / (std + self.eps)


def _check(cfg) -> None:
    for name in cfg.INPUT.TRANSFORMS:
        if name not in AVAILABLE_TRANSFORMS:
            raise ValueError(f"INPUT.TRANSFORMS: unknown transform '{name}'; available: {', '.join(AVAILABLE_TRANSFORMS)}")
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ValueError(f"INPUT.INTERPOLATION '{cfg.INPUT.INTERPOLATION}' must be one of "
                         f"{', '.join(INTERPOLATION_MODES)}")
    if "random_crop" in cfg.INPUT.TRANSFORMS and "random_resized_crop" in cfg.INPUT.TRANSFORMS:
        raise ValueError("INPUT.TRANSFORMS: random_crop and random_resized_crop cannot be used together")


def build_transform(cfg, is_train: bool = True, choices: Sequence[str] = None):
    """The train or test transform of ``cfg.INPUT`` (a torchvision ``Compose``)."""
    if cfg.INPUT.NO_TRANSFORM:
        return Compose([ToTensor()])
    _check(cfg)
    choices = tuple(cfg.INPUT.TRANSFORMS if choices is None else choices)
    size = tuple(int(s) for s in cfg.INPUT.SIZE)
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    normalize = Normalize(mean=list(cfg.INPUT.PIXEL_MEAN), std=list(cfg.INPUT.PIXEL_STD))
    tfm = []
    if not is_train:
        tfm += [Resize(max(size), interpolation=interp), CenterCrop(size), ToTensor()]
        if "normalize" in choices:
            tfm.append(normalize)
        if "instance_norm" in choices:
            tfm.append(InstanceNormalization())
        return Compose(tfm)

    # Dassl resizes to INPUT.SIZE when no crop sets the size; "resize" asks for it explicitly
    if "resize" in choices or ("random_crop" not in choices and "random_resized_crop" not in choices):
        tfm.append(Resize(size, interpolation=interp))
    if "random_translation" in choices:
        tfm.append(Random2DTranslation(size[0], size[1], interpolation=_PIL_MODES[cfg.INPUT.INTERPOLATION]))
    if "random_crop" in choices:
        tfm.append(RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        tfm.append(RandomResizedCrop(size, scale=tuple(cfg.INPUT.RRCROP_SCALE), interpolation=interp))
    if "center_crop" in choices:
        tfm.append(CenterCrop(size))
    if "random_flip" in choices:
        tfm.append(RandomHorizontalFlip())
    if "colorjitter" in choices:
        tfm.append(ColorJitter(brightness=cfg.INPUT.COLORJITTER_B, contrast=cfg.INPUT.COLORJITTER_C,
                               saturation=cfg.INPUT.COLORJITTER_S, hue=cfg.INPUT.COLORJITTER_H))
    if "randomgrayscale" in choices:
        tfm.append(RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        tfm.append(RandomApply([GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    tfm.append(ToTensor())
    if "cutout" in choices:
        tfm.append(Cutout(cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN))
    if "normalize" in choices:
        tfm.append(normalize)
    if "gaussian_noise" in choices:
        tfm.append(GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD))
    if "instance_norm" in choices:
        tfm.append(InstanceNormalization())
    return Compose(tfm)
