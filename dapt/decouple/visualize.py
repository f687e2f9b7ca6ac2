"""PNG overlays of what DAPT trains on: image | mask overlay | I_f | I_b, one row per sample."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(C, H, W) normalised tensor -> (H, W, 3) uint8."""
    m = torch.as_tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return ((x.detach().cpu() * s + m).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def mask_overlay(rgb: np.ndarray, mask: np.ndarray, color=(255, 40, 40), alpha: float = 0.5) -> np.ndarray:
    """Foreground tinted with ``color``, background darkened, mask border drawn."""
    m = mask.astype(bool)
    out = rgb.astype(np.float32)
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, np.float32)
    out[~m] *= 0.6
    edge = m ^ np.pad(m, 1, mode="edge")[1:-1, :-2] | m ^ np.pad(m, 1, mode="edge")[:-2, 1:-1]
    out[edge] = (255, 255, 0)
    return out.clip(0, 255).astype(np.uint8)


def triplet_sheet(images: torch.Tensor, masks: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor,
                  mean: Sequence[float], std: Sequence[float], labels: Optional[Sequence[str]] = None,
                  gap: int = 4) -> Image.Image:
    """A grid image: for each sample, original | mask overlay | I_f | I_b."""
    rows = []
    for i in range(images.shape[0]):
        rgb = denormalize(images[i], mean, std)
        cells = [rgb, mask_overlay(rgb, masks[i, 0].cpu().numpy() > 0.5), denormalize(fg[i], mean, std),
                 denormalize(bg[i], mean, std)]
        h = rgb.shape[0]
        sep = np.full((h, gap, 3), 255, np.uint8)
        row = np.concatenate(sum(([c, sep] for c in cells), [])[:-1], axis=1)
        rows.append(row)
        rows.append(np.full((gap, row.shape[1], 3), 255, np.uint8))
    return Image.fromarray(np.concatenate(rows[:-1], axis=0))
