"""DAPT's three terms (Eqs. 4-6) and their weighting / schedule (Eq. 7, or the official switch).

Each function returns a batch mean, like the cross-entropy; features are L2-normalised here.
"""
from __future__ import annotations

from typing import Dict, Optional, Set

import torch
import torch.nn.functional as F

from dapt.methods.base import classification_loss

TERMS = ("fg", "bg", "triplet")


def _dist(a: torch.Tensor, b: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    return (a - b + eps).abs().pow(p).sum(-1).pow(1.0 / p)


def triplet_loss(anchor: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, p: float = 1.0, margin: float = 5.0,
                 eps: float = 0.0, terms: str = "both", reduction: str = "mean", detach_pos_neg: bool = False):
    """L_v: max(||a - f||_p - ||a - b||_p + margin, 0) on normalised features, anchor = the original image.

    ``terms='pos'`` keeps the pull ||a - f||_p alone, ``'neg'`` the push max(margin - ||a - b||_p, 0) alone.
    With p=2, eps=1e-6 this is ``F.triplet_margin_loss``.
    """
    a, f, b = (F.normalize(x.float(), dim=-1) for x in (anchor, pos, neg))
    if detach_pos_neg:
        f, b = f.detach(), b.detach()
    if terms == "both":
        per = F.relu(_dist(a, f, p, eps) - _dist(a, b, p, eps) + margin)
    elif terms == "pos":
        per = _dist(a, f, p, eps)
    elif terms == "neg":
        per = F.relu(margin - _dist(a, b, p, eps))
    else:
        raise ValueError(f"DAPT.TRIPLET.TERMS '{terms}' must be both, pos or neg")
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    raise ValueError(f"DAPT.TRIPLET.REDUCTION '{reduction}' must be mean or sum")


def scaled_logits(scale: torch.Tensor, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    return scale * F.normalize(image.float(), dim=-1) @ F.normalize(text.float(), dim=-1).t()


def foreground_loss(scale, z_f, text_fg, labels, multi_label: bool = False, detach_image: bool = False):
    """L_f (Eq. 4): the foreground image classified against the prompted class texts."""
    if detach_image:
        z_f = z_f.detach()
    return classification_loss(scaled_logits(scale, z_f, text_fg), labels, multi_label)


@torch.no_grad()
def background_pseudo_labels(z_b: torch.Tensor, text_bg: torch.Tensor) -> torch.Tensor:
    """y_b = argmax_j cos(Z_b, Z_U^j)."""
    return (F.normalize(z_b.float(), dim=-1) @ F.normalize(text_bg.float(), dim=-1).t()).argmax(dim=-1)


def background_loss(scale, z_b, text_bg, pseudo_labels):
    """L_b (Eq. 5): the background image classified against the prompted background texts."""
    return F.cross_entropy(scaled_logits(scale, z_b, text_bg), pseudo_labels)


class DAPTLoss:
    """Weights and schedule of the DAPT terms, and which terms a step computes."""

    def __init__(self, loss_cfg, triplet_cfg, multi_label: bool = False):
        if loss_cfg.SCHEDULE not in ("joint", "epoch_switch"):
            raise ValueError(f"DAPT.LOSS.SCHEDULE '{loss_cfg.SCHEDULE}' must be joint or epoch_switch")
        self.loss_cfg = loss_cfg
        self.t = triplet_cfg
        self.multi_label = multi_label
        self.weights = {"cls": float(loss_cfg.W_CLS), "fg": float(loss_cfg.W_F), "bg": float(loss_cfg.W_B),
                        "triplet": float(loss_cfg.W_V)}
        self.enabled = {"fg": bool(loss_cfg.USE_F), "bg": bool(loss_cfg.USE_B), "triplet": bool(loss_cfg.USE_V)}

    def active(self, epoch: int, image_learnable: bool = True) -> Set[str]:
        """The DAPT terms computed in this epoch (all of them, every step, under the paper's joint schedule)."""
        on = {k for k, v in self.enabled.items() if v and self.weights[k] != 0}
        if not image_learnable:
            on.discard("triplet")  # L_v has no gradient without learnable image-side parameters (CoOp)
        if self.loss_cfg.SCHEDULE == "epoch_switch":
            late = epoch > int(self.loss_cfg.SWITCH_EPOCH)
            on &= {"fg", "bg"} if late else {"triplet"}
        return on

    def __call__(self, scale, z_i, z_f, z_b, text_fg, labels, text_bg=None, pseudo_labels=None,
                 active: Optional[Set[str]] = None) -> "tuple[Dict[str, torch.Tensor], torch.Tensor]":
        """Raw (unweighted) terms, a plain CLIP cls and the active DAPT terms; and the class logits
        (for a method whose own objective is the cross-entropy; the trainer uses the method's terms)."""
        logits = scaled_logits(scale, z_i, text_fg)
        raw = {"cls": classification_loss(logits, labels, self.multi_label)}
        raw.update(self.terms(scale, z_i, z_f, z_b, text_fg, labels, text_bg, pseudo_labels, active))
        return raw, logits

    def terms(self, scale, z_i, z_f, z_b, text_fg, labels, text_bg=None, pseudo_labels=None,
              active: Optional[Set[str]] = None) -> Dict[str, torch.Tensor]:
        """Raw (unweighted) DAPT terms: the active ones of fg, bg, triplet."""
        active = set(TERMS) if active is None else active
        raw = {}
        if "fg" in active:
            raw["fg"] = foreground_loss(scale, z_f, text_fg, labels, self.multi_label,
                                        bool(self.loss_cfg.F_DETACH_IMAGE))
        if "bg" in active:
            raw["bg"] = background_loss(scale, z_b, text_bg, pseudo_labels)
        if "triplet" in active:
            t = self.t
            raw["triplet"] = triplet_loss(z_i, z_f, z_b, float(t.P), float(t.MARGIN), float(t.EPS), t.TERMS,
                                          t.REDUCTION, bool(t.DETACH_POS_NEG))
        return raw

    def weighted(self, raw: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {k: self.weights[k] * v for k, v in raw.items()}
