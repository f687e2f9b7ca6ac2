"""DAPT-G: Grad-CAM foreground masks from the current prompted model (Eq. 3, with the spec's layer fix).

Activations A are the patch tokens of the *input* of the last visual block (the ``ln_1`` output;
the block output's patch tokens get zero gradient, see spec 1.3). The target is the cosine
similarity of each image's prompted feature to its ground-truth class text (summed over the batch:
per-sample gradients, no cross-talk). Eq. 3 weights element-wise and averages over channels;
``spatial_mean`` is the official canonical Grad-CAM. Then ReLU, bilinear upsampling, per-image
min-max (or the official batch max), threshold.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def last_block_norm(method: nn.Module) -> nn.Module:
    """``visual.transformer.resblocks[-1].ln_1`` of the method's CLIP."""
    visual = method.clip_model.visual
    try:
        return visual.transformer.resblocks[-1].ln_1
    except AttributeError:
        raise ValueError("DAPT-G Grad-CAM needs a ViT image tower (visual.transformer.resblocks[-1].ln_1); "
                         f"{type(visual).__name__} has none: use DAPT.MASK.SOURCE precomputed") from None


def patch_grid(method: nn.Module):
    gs = getattr(method.clip_model.visual, "grid_size", None)
    if gs is None:
        raise ValueError("the image tower has no grid_size; Grad-CAM needs a ViT")
    return int(gs[0]), int(gs[1])


class GradCamMasker:
    """Batched binary Grad-CAM masks for a ``PromptMethod``."""

    def __init__(self, weighting: str = "elementwise", norm: str = "per_image_minmax", threshold: float = 0.5,
                 threshold_op: str = "gt", align_corners: bool = False, precision: str = "fp32"):
        checks = {"DAPT.CAM.WEIGHTING": (weighting, ("elementwise", "spatial_mean")),
                  "DAPT.CAM.NORM": (norm, ("per_image_minmax", "batch_max")),
                  "DAPT.CAM.THRESHOLD_OP": (threshold_op, ("gt", "ge")),
                  "DAPT.CAM.PRECISION": (precision, ("fp32", "fp16", "bf16"))}
        for key, (v, ok) in checks.items():
            if v not in ok:
                raise ValueError(f"{key} '{v}' must be one of {', '.join(ok)}")
        self.weighting, self.norm, self.threshold = weighting, norm, float(threshold)
        self.threshold_op, self.align_corners, self.precision = threshold_op, bool(align_corners), precision

    @classmethod
    def from_cfg(cls, cam_cfg) -> "GradCamMasker":
        if cam_cfg.LAYER not in ("last_block_input", "ln1_last"):
            raise ValueError(f"DAPT.CAM.LAYER '{cam_cfg.LAYER}' must be last_block_input (= ln1_last, the official "
                             "layer); the last block's output gets zero gradient on its patch tokens")
        return cls(cam_cfg.WEIGHTING, cam_cfg.NORM, cam_cfg.THRESHOLD, cam_cfg.THRESHOLD_OP, cam_cfg.ALIGN_CORNERS,
                   cam_cfg.PRECISION)

    def _autocast(self, device: torch.device):
        if device.type == "cuda" and self.precision in ("fp16", "bf16"):
            return torch.autocast("cuda", dtype=torch.float16 if self.precision == "fp16" else torch.bfloat16)
        return contextlib.nullcontext()

    def raw_cam(self, method: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                text_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The un-normalised CAM on the patch grid, (B, gh, gw), after ReLU.

        ``targets``: class indices (B,) or multi-hot (B, C) (the score sums the positive classes).
        """
        gh, gw = patch_grid(method)
        n = gh * gw
        store = {}

        def hook(_module, _inp, out):
            leaf = out.detach().requires_grad_(True)
            store["act"] = leaf
            return leaf

        if text_features is None:
            with torch.no_grad():
                text_features = method.encode_text()
        t = F.normalize(text_features.detach().float(), dim=-1)
        handle = last_block_norm(method).register_forward_hook(hook)
        try:
            with torch.enable_grad(), self._autocast(images.device):
                feats = method.encode_image(images)
            act = store["act"]
            z = F.normalize(feats.float(), dim=-1)
            sims = z @ t.t()
            if targets.dim() == 1:
                score = sims.gather(1, targets.long().view(-1, 1)).sum()
            else:
                score = (sims * targets.float()).sum()
            grad, = torch.autograd.grad(score, act)
        finally:
            handle.remove()
        a = act.detach().float()[:, 1:1 + n]  # [CLS, patches, prompts]: patch tokens only
        g = grad.float()[:, 1:1 + n]
        if self.weighting == "elementwise":
            cam = (g * a).mean(dim=-1)
        else:
            alpha = g.mean(dim=1, keepdim=True)  # per-channel weight: spatial mean of the gradient
            cam = (a * alpha).sum(dim=-1)
        return F.relu(cam).reshape(-1, gh, gw)

    def postprocess(self, cam: torch.Tensor, size) -> torch.Tensor:
        """Upsample (bilinear), normalise, threshold: binary (B, H, W) float masks."""
        up = F.interpolate(cam[:, None], size=tuple(int(s) for s in size), mode="bilinear",
                           align_corners=self.align_corners)[:, 0]
        if self.norm == "per_image_minmax":
            lo = up.amin(dim=(1, 2), keepdim=True)
            hi = up.amax(dim=(1, 2), keepdim=True)
            g = (up - lo) / (hi - lo).clamp_min(1e-12)
        else:
            g = up / (up.max() + 1e-6)
        return (g >= self.threshold if self.threshold_op == "ge" else g > self.threshold).float()

    def __call__(self, method: nn.Module, images: torch.Tensor, targets: torch.Tensor, size=None,
                 text_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        size = size or images.shape[-2:]
        return self.postprocess(self.raw_cam(method, images, targets, text_features), size)

    def refresh(self, method: nn.Module, loader, bank, device: torch.device, size=None) -> dict:
        """Recompute every sample's mask with the current model in eval mode; fill ``bank``."""
        was_training = method.training
        method.eval()
        t0 = time.time()
        fg, count = 0.0, 0
        try:
            with torch.no_grad():
                text = method.encode_text()
            for batch in loader:
                images = batch["img"].to(device)
                labels = batch["label"].to(device)
                masks = self(method, images, labels, size=size or (bank.h, bank.w), text_features=text)
                bank.put(batch["index"].tolist(), masks)
                fg += float(masks.sum())
                count += masks.numel()
        finally:
            method.train(was_training)
        missing = int((~bank.filled).sum())
        if missing:
            raise RuntimeError(f"Grad-CAM refresh left {missing} training samples without a mask; "
                               "the mask loader must visit every sample (no drop_last)")
        return {"seconds": time.time() - t0, "fg_fraction": fg / max(count, 1), "num": len(bank.filled)}

