"""Multi-label evaluation: mean average precision over classes (VOC / sklearn AP, no interpolation)."""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
import torch

logger = logging.getLogger(__name__)


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Non-interpolated AP of one class: mean of the precision at the rank of each positive.

    Tied scores are one threshold (as ``sklearn.metrics.average_precision_score``): every item of a
    tie group counts as retrieved together. Returns NaN when there is no positive.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    targets = (np.asarray(targets).ravel() > 0).astype(np.float64)
    n_pos = targets.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], targets[order]
    # the last index of each group of equal scores
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(t)[last]
    retrieved = last + 1
    precision = tp / retrieved
    recall_gain = np.diff(np.r_[0.0, tp]) / n_pos
    return float(np.sum(precision * recall_gain))


def mean_average_precision(scores, targets) -> float:
    """mAP in percent: per-class AP averaged over the classes that have at least one positive."""
    if torch.is_tensor(scores):
        scores = scores.detach().float().cpu().numpy()
    if torch.is_tensor(targets):
        targets = targets.detach().float().cpu().numpy()
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be [N, C]")
    aps = per_class_average_precision(scores, targets)
    valid = [a for a in aps if not np.isnan(a)]
    if not valid:
        raise ValueError("no class has a positive target; mAP is undefined")
    return 100.0 * float(np.mean(valid))


def per_class_average_precision(scores: np.ndarray, targets: np.ndarray) -> List[float]:
    return [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]


class MultiLabelEvaluator:
    """Collects [N, C] scores and multi-hot targets; ``evaluate`` logs and returns the mAP."""

    def __init__(self, lab2cname: Optional[Dict[int, str]] = None, per_class: bool = False):
        self.lab2cname = dict(lab2cname or {})
        self.per_class = per_class
        self.reset()

    def reset(self) -> None:
        self._scores: List[np.ndarray] = []
        self._targets: List[np.ndarray] = []

    def process(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        """``scores``: [B, C] logits or probabilities; ``targets``: [B, C] multi-hot."""
        s = scores.detach().float().cpu().numpy() if torch.is_tensor(scores) else np.asarray(scores, np.float32)
        t = targets.detach().float().cpu().numpy() if torch.is_tensor(targets) else np.asarray(targets, np.float32)
        if s.shape != t.shape:
            raise ValueError(f"multi-label evaluation needs multi-hot targets shaped like the scores "
                             f"{tuple(s.shape)}, got {tuple(t.shape)}")
        self._scores.append(s)
        self._targets.append(t)

    def evaluate(self) -> "OrderedDict[str, float]":
        if not self._scores:
            raise ValueError("MultiLabelEvaluator.evaluate called before any process()")
        scores, targets = np.concatenate(self._scores), np.concatenate(self._targets)
        aps = per_class_average_precision(scores, targets)
        valid = [a for a in aps if not np.isnan(a)]
        m = 100.0 * float(np.mean(valid)) if valid else 0.0
        results = OrderedDict(mAP=m)
        logger.info("=> result\n* total: %s\n* classes evaluated: %d\n* mAP: %.1f%%", f"{len(scores):,}", len(valid), m)
        if self.per_class:
            lines = ["=> per-class result"]
            for c, a in enumerate(aps):
                if not np.isnan(a):
                    lines.append(f"* class: {c} ({self.lab2cname.get(c, c)})\tAP: {100 * a:.1f}%")
            logger.info("\n".join(lines))
        return results
