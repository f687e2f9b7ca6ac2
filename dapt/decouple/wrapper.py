"""The masking dataset wrapper: each training sample comes with its foreground mask, both under
the same geometric augmentation.

Mask providers give a uint8 {0, 1} mask at any resolution for sample ``index``:
``StoreMasks`` (precomputed, DAPT-S) and ``MaskBank`` (per-epoch Grad-CAM, DAPT-G, kept as bits).
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dapt.data.data_manager import read_image
from dapt.decouple.masks import MaskStore
from dapt.decouple.paired import PairedTransform, grid_erase
from dapt.decouple.quality import degrade as degrade_mask

logger = logging.getLogger(__name__)


class StoreMasks:
    """Precomputed masks read from a ``MaskStore``; images without one follow the MISSING policy.
    ``degrade`` (DAPT.MASK.DEGRADE, DEGRADE_PX): each read mask is dilated or eroded at its own resolution."""

    def __init__(self, store: MaskStore, impaths: Sequence[str], missing: str = "error", degrade=("none", 0)):
        self.store = store
        self.impaths = list(impaths)
        self.missing = missing
        self.degrade = (str(degrade[0]), int(degrade[1]))
        self._absent = set(store.check(self.impaths, missing))
        store.audit([p for p in self.impaths if p not in self._absent])

    def __call__(self, index: int, image_size) -> np.ndarray:
        p = self.impaths[index]
        if p in self._absent:
            w, h = image_size
            return np.full((h, w), 1 if self.missing == "full" else 0, np.uint8)
        mask = self.store.read(p)
        if self.degrade[0] != "none":
            mask = degrade_mask(mask, *self.degrade)
        return mask


class MaskBank:
    """Binary masks of every training sample at a fixed resolution, packed 8 pixels a byte."""

    def __init__(self, num: int, size):
        self.h, self.w = int(size[0]), int(size[1])
        self.bits = np.zeros((num, (self.h * self.w + 7) // 8), np.uint8)
        self.filled = np.zeros(num, bool)

    def put(self, indices, masks: torch.Tensor) -> None:
        m = (masks.reshape(len(indices), -1) > 0).cpu().numpy()
        idx = np.asarray(indices, dtype=np.int64)
        self.bits[idx] = np.packbits(m, axis=1)
        self.filled[idx] = True

    def get(self, index: int) -> np.ndarray:
        if not self.filled[index]:
            raise RuntimeError(f"no Grad-CAM mask for training sample {index}: the mask refresh has not run "
                               "(DAPT-G masks are computed by the DAPT hook before every epoch)")
        return np.unpackbits(self.bits[index])[: self.h * self.w].reshape(self.h, self.w)

    def foreground_fraction(self) -> float:
        if not self.filled.any():
            return 0.0
        ones = np.unpackbits(self.bits[self.filled], axis=1)[:, : self.h * self.w]
        return float(ones.mean())

    def __call__(self, index: int, image_size) -> np.ndarray:
        return self.get(index)


class MaskingDataset(Dataset):
    """Returns {"img", "mask", "label", "impath", "index"} (plus "mask_bg" when erasing applies to
    the foreground only). ``set_epoch`` redraws the erasing grid."""

    def __init__(self, data_source, masks, transform: PairedTransform, erase_rate: float = 0.0,
                 erase_cells=(16, 32), erase_background: str = "original", seed: int = 0):
        self.data_source = data_source
        self.masks = masks
        self.transform = transform
        self.erase_rate = float(erase_rate)
        self.erase_cells = tuple(int(c) for c in erase_cells)
        if erase_background not in ("original", "erased"):
            raise ValueError(f"DAPT.ERASE.BACKGROUND '{erase_background}' must be original or erased")
        if not 0.0 <= self.erase_rate <= 1.0:
            raise ValueError(f"DAPT.ERASE.RATE {erase_rate} must lie in [0, 1]")
        self.erase_background = erase_background
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, index: int):
        item = self.data_source[index]
        img = read_image(item.impath)
        mask = self.masks(index, img.size)
        x, m = self.transform(img, mask)
        out = {"img": x, "label": _label(item.label), "impath": item.impath, "index": index}
        if self.erase_rate > 0:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
            erased = grid_erase(m, self.erase_rate, self.erase_cells, g)
            if self.erase_background == "original":
                out["mask_bg"] = m
            m = erased
        out["mask"] = m
        return out


def _label(label):
    if isinstance(label, (list, tuple, np.ndarray)):
        return torch.as_tensor(np.asarray(label), dtype=torch.float32)
    if torch.is_tensor(label):
        return label
    return int(label)


class FullViewDataset(Dataset):
    """Training images through a deterministic transform, with their indices (for the Grad-CAM pass)."""

    def __init__(self, data_source, transform):
        self.data_source = data_source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, index: int):
        item = self.data_source[index]
        return {"img": self.transform(read_image(item.impath)), "label": _label(item.label), "index": index}
