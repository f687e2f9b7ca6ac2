"""Paired image + mask transforms: the same geometric draw for both, nearest-neighbour for the mask.

Follows Dassl's train-transform order (resize when no crop is asked for, random_crop,
random_resized_crop, random_flip, to-tensor, normalize). Only geometric steps touch the mask;
normalisation touches the image only. A transform that is not pair-aware is refused by name.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode, RandomResizedCrop

INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
          "nearest": InterpolationMode.NEAREST}
PAIR_AWARE = ("resize", "random_resized_crop", "random_crop", "random_flip", "center_crop", "normalize")


def _interp(name: str, key: str) -> InterpolationMode:
    if name not in INTERP:
        raise ValueError(f"{key} '{name}' must be one of {', '.join(INTERP)}")
    return INTERP[name]


def mask_to_pil(mask: np.ndarray) -> Image.Image:
    return Image.fromarray((np.asarray(mask) > 0).astype(np.uint8), mode="L")


class PairedTransform:
    """``(PIL image, uint8 mask at any resolution) -> (image tensor (3,H,W), mask tensor (1,H,W) in {0,1})``.

    The mask is first resized to the image's size, then follows the image through every draw.
    """

    def __init__(self, cfg, mask_interp: str = "nearest", is_train: bool = True):
        inp = cfg.INPUT
        self.size = tuple(int(s) for s in inp.SIZE)
        self.interp = _interp(inp.INTERPOLATION, "INPUT.INTERPOLATION")
        self.mask_interp = _interp(mask_interp, "DAPT.MASK.INTERP")
        names = list(inp.TRANSFORMS) if is_train else []
        bad = [n for n in names if n not in PAIR_AWARE]
        if bad:
            raise ValueError(f"INPUT.TRANSFORMS {bad} are not pair-aware for DAPT's image+mask pipeline; "
                             f"use only {', '.join(PAIR_AWARE)}")
        self.names = names
        self.no_transform = bool(inp.NO_TRANSFORM)
        self.scale = tuple(inp.RRCROP_SCALE)
        self.padding = int(inp.CROP_PADDING)
        self.normalize = "normalize" in names or not is_train
        self.mean, self.std = list(inp.PIXEL_MEAN), list(inp.PIXEL_STD)

    def __call__(self, img: Image.Image, mask: np.ndarray):
        m = mask_to_pil(mask)
        if m.size != img.size:
            m = m.resize(img.size, resample=_PIL[self.mask_interp])
        if not self.no_transform:
            names = self.names
            if "resize" in names or ("random_crop" not in names and "random_resized_crop" not in names):
                if "center_crop" in names:
                    img, m = TF.resize(img, max(self.size), self.interp), TF.resize(m, max(self.size), self.mask_interp)
                    img, m = TF.center_crop(img, list(self.size)), TF.center_crop(m, list(self.size))
                else:
                    img, m = TF.resize(img, list(self.size), self.interp), TF.resize(m, list(self.size), self.mask_interp)
            if "random_crop" in names:
                if self.padding:
                    img, m = TF.pad(img, self.padding), TF.pad(m, self.padding)
                h, w = self.size
                W, H = img.size
                if H < h or W < w:
                    img, m = TF.resize(img, list(self.size), self.interp), TF.resize(m, list(self.size), self.mask_interp)
                    W, H = img.size
                i = int(torch.randint(0, H - h + 1, (1,)))
                j = int(torch.randint(0, W - w + 1, (1,)))
                img, m = TF.crop(img, i, j, h, w), TF.crop(m, i, j, h, w)
            if "random_resized_crop" in names:
                i, j, h, w = RandomResizedCrop.get_params(img, list(self.scale), [3.0 / 4.0, 4.0 / 3.0])
                img = TF.resized_crop(img, i, j, h, w, list(self.size), self.interp)
                m = TF.resized_crop(m, i, j, h, w, list(self.size), self.mask_interp)
            if "random_flip" in names and torch.rand(1).item() < 0.5:
                img, m = TF.hflip(img), TF.hflip(m)
        x = TF.to_tensor(img)
        if self.normalize and not self.no_transform:
            x = TF.normalize(x, self.mean, self.std)
        mt = torch.from_numpy((np.asarray(m) > 0).astype(np.float32))[None]
        return x, mt


_PIL = {InterpolationMode.NEAREST: Image.NEAREST, InterpolationMode.BILINEAR: Image.BILINEAR,
        InterpolationMode.BICUBIC: Image.BICUBIC}


def full_view_transform(cfg):
    """The deterministic full view for Grad-CAM: the whole image resized to INPUT.SIZE, normalised."""
    size = [int(s) for s in cfg.INPUT.SIZE]
    interp = _interp(cfg.INPUT.INTERPOLATION, "INPUT.INTERPOLATION")
    mean, std = list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)

    def tfm(img: Image.Image) -> torch.Tensor:
        return TF.normalize(TF.to_tensor(TF.resize(img, size, interp)), mean, std)

    return tfm


def grid_erase(mask: torch.Tensor, rate: float, cells: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """M' = M * Grid: one cell size drawn from ``cells`` per image, each cell zeroed with probability ``rate``."""
    _, H, W = mask.shape
    cell = int(cells[int(torch.randint(0, len(cells), (1,), generator=generator))])
    gh, gw = math.ceil(H / cell), math.ceil(W / cell)
    keep = (torch.rand(gh, gw, generator=generator) >= rate).float()
    grid = keep.repeat_interleave(cell, 0).repeat_interleave(cell, 1)[:H, :W]
    return mask * grid[None]
