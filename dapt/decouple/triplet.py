"""Visual triplets (I, I_f, I_b) from a batch and its foreground masks.

I_f = M * I and I_b = (1 - M) * I on the normalised tensor (a zeroed pixel takes CLIP's mean
colour), or with black pixels, or with the two Gaussian-blur readings of Table 9.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torchvision.transforms import GaussianBlur

FILL_MODES = ("normalized_zero", "pixel_black", "blur_reverse", "blur_soft")


@dataclass
class TripletBatch:
    image: torch.Tensor
    fg: torch.Tensor
    bg: torch.Tensor

    def stacked(self) -> torch.Tensor:
        """(3B, C, H, W): one batched pass through the image encoder."""
        return torch.cat([self.image, self.fg, self.bg], dim=0)


def make_triplet(images: torch.Tensor, mask: torch.Tensor, mask_bg: Optional[torch.Tensor] = None,
                 fill: str = "normalized_zero", mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0), blur_kernel=(5, 9), blur_sigma=(0.1, 1.0)) -> TripletBatch:
    """``mask`` (B, 1, H, W) in [0, 1] selects the foreground; ``mask_bg`` (default ``mask``) defines
    the background half (they differ only under foreground-only grid erasing)."""
    if fill not in FILL_MODES:
        raise ValueError(f"DAPT.FILL.MODE '{fill}' must be one of {', '.join(FILL_MODES)}")
    m = mask.to(images.dtype)
    mb = m if mask_bg is None else mask_bg.to(images.dtype)
    if fill == "normalized_zero":
        return TripletBatch(images, m * images, (1 - mb) * images)
    if fill == "pixel_black":
        black = (-torch.as_tensor(mean, dtype=images.dtype, device=images.device)
                 / torch.as_tensor(std, dtype=images.dtype, device=images.device)).view(1, -1, 1, 1)
        return TripletBatch(images, m * images + (1 - m) * black, (1 - mb) * images + mb * black)
    blur = GaussianBlur(kernel_size=tuple(blur_kernel), sigma=tuple(blur_sigma))
    if fill == "blur_reverse":  # FGVP: the other half blurred instead of removed
        blurred = blur(images)
        return TripletBatch(images, m * images + (1 - m) * blurred, (1 - mb) * images + mb * blurred)
    soft = blur(m)  # blur_soft: a soft 0-1 mask
    soft_bg = soft if mask_bg is None else blur(mb)
    return TripletBatch(images, soft * images, (1 - soft_bg) * images)
