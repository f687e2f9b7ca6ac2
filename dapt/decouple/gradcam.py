"""DAPT-G: Grad-CAM foreground masks from the current prompted model (Eq. 3, with the spec's layer fix).

Activations A are the patch tokens of the *input* of the last visual block (the ``ln_1`` output;
the block output's patch tokens get zero gradient, see spec 1.3). The target is the cosine
similarity of each image's prompted feature to its ground-truth class text (summed over the batch:
per-sample gradients, no cross-talk). Eq. 3 weights element-wise and averages over channels;
``spatial_mean`` is the official canonical Grad-CAM. Then ReLU, bilinear upsampling, per-image
min-max (or the official batch max), threshold. Only the last block records a graph: the blocks
before it run without one (in the layout a pass with gradients takes, so the values are the same).
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dapt.models.blocks import autograd_layout

logger = logging.getLogger(__name__)


def last_block(method: nn.Module) -> nn.Module:
    """``visual.transformer.resblocks[-1]`` of the method's CLIP (the block Grad-CAM reads the input of)."""
    visual = method.clip_model.visual
    try:
        block = visual.transformer.resblocks[-1]
        block.ln_1
    except AttributeError:
        raise ValueError("DAPT-G Grad-CAM needs a ViT image tower (visual.transformer.resblocks[-1].ln_1); "
                         f"{type(visual).__name__} has none: use DAPT.MASK.SOURCE precomputed") from None
    return block


def last_block_norm(method: nn.Module) -> nn.Module:
    """``visual.transformer.resblocks[-1].ln_1`` of the method's CLIP."""
    return last_block(method).ln_1


def _record_from_here(_module, _inputs) -> None:
    """Forward pre-hook: autograd records from this module on (the caller's ``no_grad`` block restores
    the previous mode when it exits). Returns None: the inputs pass unchanged."""
    torch.set_grad_enabled(True)


def patch_grid(method: nn.Module):
    gs = getattr(method.clip_model.visual, "grid_size", None)
    if gs is None:
        raise ValueError("the image tower has no grid_size; Grad-CAM needs a ViT")
    return int(gs[0]), int(gs[1])


def shard_batches(num: int, batch_size: int, world: int) -> List[List[List[int]]]:
    """The sequential batches of a single-process refresh (indices 0..num-1, ``batch_size`` each),
    dealt round-robin: entry r lists rank r's batches (r, r + world, ...). Every batch keeps its
    single-process composition, so even the official batch-max normalisation gives the same masks."""
    batches = [list(range(s, min(s + batch_size, num))) for s in range(0, num, batch_size)]
    return [batches[r::world] for r in range(world)]


def gather_masks(bank, rows_per_rank: Sequence[Sequence[int]], device: torch.device) -> None:
    """All-gather the packed mask bits each rank computed (``rows_per_rank[r]``: rank r's sample
    indices) into every rank's ``bank``: one collective of uint8 rows (padded to the longest shard)."""
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    if len(rows_per_rank) != world:
        raise ValueError(f"{len(rows_per_rank)} mask shards for {world} processes")
    longest = max(len(r) for r in rows_per_rank)
    mine = list(rows_per_rank[rank])
    buf = torch.zeros(max(longest, 1), bank.bits.shape[1], dtype=torch.uint8, device=device)
    if mine:
        buf[:len(mine)] = torch.from_numpy(bank.bits[mine]).to(device)
    out = [torch.empty_like(buf) for _ in range(world)]
    dist.all_gather(out, buf)
    for rows, got in zip(rows_per_rank, out):
        if rows:
            rows = list(rows)
            bank.bits[rows] = got[:len(rows)].cpu().numpy()
            bank.filled[rows] = True


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

    @staticmethod
    def prefix_layout(method: nn.Module):
        """The block layout of the graph-free prefix: the one a pass with gradients takes. A method
        with learnable parameters has learnable image prompts in its prompted blocks (MaPLe, VPT,
        IVLP, PromptSRC), whose tokens then require grad (sequence-first); a method whose image tower
        is CLIP's own (CoOp, CoCoOp) runs open_clip's blocks, which this does not touch."""
        if any(p.requires_grad for p in method.parameters()):
            return autograd_layout()
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
        # Only the gradient at the last block's ln_1 output is needed: the blocks before it run without
        # a graph (in the layout they take with one, so every value is what a pass with gradients
        # computes), and recording starts at the last block.
        prefix_layout = self.prefix_layout(method)
        handle = last_block_norm(method).register_forward_hook(hook)
        grad_on = last_block(method).register_forward_pre_hook(_record_from_here)
        try:
            with torch.no_grad(), prefix_layout, self._autocast(images.device):
                feats = method.encode_image(images)  # grad mode is back to off when the block exits
            act = store["act"]
            with torch.enable_grad():
                z = F.normalize(feats.float(), dim=-1)
                sims = z @ t.t()
                if targets.dim() == 1:
                    score = sims.gather(1, targets.long().view(-1, 1)).sum()
                else:
                    score = (sims * targets.float()).sum()
                grad, = torch.autograd.grad(score, act)
        finally:
            handle.remove()
            grad_on.remove()
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

    def refresh(self, method: nn.Module, loader, bank, device: torch.device, size=None,
                shards: Optional[Sequence[Sequence[int]]] = None) -> dict:
        """Recompute every sample's mask with the current model in eval mode; fill ``bank``.

        ``shards`` (torchrun): the sample indices of each rank; ``loader`` then yields this rank's
        batches only, and the masks are all-gathered so that every rank's bank holds all of them."""
        was_training = method.training
        method.eval()
        t0 = time.time()
        fg = torch.zeros((), dtype=torch.float64, device=device)
        count = 0
        try:
            with torch.no_grad():
                text = method.encode_text()
            for batch in loader:
                images = batch["img"].to(device, non_blocking=True)
                labels = batch["label"].to(device, non_blocking=True)
                masks = self(method, images, labels, size=size or (bank.h, bank.w), text_features=text)
                bank.put(batch["index"].tolist(), masks)
                fg += masks.sum(dtype=torch.float64)
                count += masks.numel()
        finally:
            method.train(was_training)
        if shards is not None:
            import torch.distributed as dist

            gather_masks(bank, shards, device)
            stats = torch.stack([fg, torch.tensor(float(count), dtype=torch.float64, device=device)])
            dist.all_reduce(stats)
            fg, count = stats[0], int(stats[1].item())
        fg = float(fg)
        missing = int((~bank.filled).sum())
        if missing:
            raise RuntimeError(f"Grad-CAM refresh left {missing} training samples without a mask; "
                               "the mask loader must visit every sample (no drop_last)")
        return {"seconds": time.time() - t0, "fg_fraction": fg / max(count, 1), "num": len(bank.filled)}

