"""Evaluators that report Dassl's result lines, so existing result parsers keep working."""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Dict, Optional

import numpy as np
import torch

logger = logging.getLogger(__name__)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over the labels present in either array (scikit-learn's default), in [0, 1]."""
    labels = np.union1d(y_true, y_pred)
    scores = []
    for c in labels:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        scores.append(0.0 if denom == 0 else 2 * tp / denom)
    return float(np.mean(scores)) if scores else 0.0


class Classification:
    """Single-label accuracy, error and macro F1 (and optionally per-class accuracy)."""

    def __init__(self, lab2cname: Optional[Dict[int, str]] = None, per_class: bool = False,
                 cmat_path: Optional[str] = None):
        self.lab2cname = lab2cname or {}
        self.per_class = per_class
        self.cmat_path = cmat_path
        self.reset()

    def reset(self) -> None:
        self._pred, self._true = [], []

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self._pred.append(logits.argmax(dim=1).detach().cpu().numpy())
        self._true.append(labels.detach().cpu().numpy())

    def evaluate(self, extra: Optional[Dict[str, float]] = None) -> "OrderedDict[str, float]":
        """The metrics, logged as Dassl's result block; ``extra`` (name -> percentage) joins the block."""
        y_pred = np.concatenate(self._pred) if self._pred else np.zeros(0, dtype=int)
        y_true = np.concatenate(self._true) if self._true else np.zeros(0, dtype=int)
        total = len(y_true)
        correct = int((y_pred == y_true).sum())
        acc = 100.0 * correct / max(total, 1)
        results = OrderedDict(accuracy=acc, error=100.0 - acc, macro_f1=100.0 * macro_f1(y_true, y_pred))
        extra = dict(extra or {})
        results.update(extra)
        logger.info("=> result\n* total: %s\n* correct: %s\n* accuracy: %.1f%%\n* error: %.1f%%\n* macro_f1: %.1f%%%s",
                    f"{total:,}", f"{correct:,}", acc, 100.0 - acc, results["macro_f1"],
                    "".join(f"\n* {k}: {v:.1f}%" for k, v in extra.items()))
        if self.per_class:
            lines = ["=> per-class result"]
            accs = []
            for c in np.unique(y_true):
                sel = y_true == c
                a = 100.0 * float((y_pred[sel] == c).mean())
                accs.append(a)
                lines.append(f"* class: {c} ({self.lab2cname.get(int(c), c)})\ttotal: {sel.sum():,}\taccuracy: {a:.1f}%")
            results["perclass_accuracy"] = float(np.mean(accs)) if accs else 0.0
            lines.append(f"* average: {results['perclass_accuracy']:.1f}%")
            logger.info("\n".join(lines))
        if self.cmat_path:
            save_confusion_matrix(confusion_matrix(y_true, y_pred, len(self.lab2cname)), self.cmat_path)
        return results


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 0) -> torch.Tensor:
    """Row-normalised confusion matrix (K, K): entry [i, j] = share of the class-i samples predicted
    as j (Dassl's ``normalize="true"``); K covers the classes and any extra predicted column."""
    k = int(max([num_classes, int(y_true.max(initial=-1)) + 1, int(y_pred.max(initial=-1)) + 1]))
    counts = torch.zeros(k, k, dtype=torch.float64)
    if len(y_true):
        idx = torch.as_tensor(y_true * k + y_pred, dtype=torch.long)
        counts = torch.bincount(idx, minlength=k * k).reshape(k, k).double()
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1)


def save_confusion_matrix(cmat: torch.Tensor, path: str) -> None:
    from dapt.utils.atomic import atomic_torch_save

    atomic_torch_save(cmat, path)
    logger.info("Confusion matrix saved to %s", path)


def build_evaluator(cfg, lab2cname, multi_label: bool = False):
    """The evaluator for a dataset: Classification, or mAP for multi-label data."""
    if multi_label or cfg.TEST.EVALUATOR == "MultiLabelClassification":
        from dapt.engine.multilabel import MultiLabelEvaluator

        if cfg.TEST.COMPUTE_CMAT:
            raise ValueError("TEST.COMPUTE_CMAT: a confusion matrix needs single-label data; set it False for "
                             "multi-label datasets")

        return MultiLabelEvaluator(lab2cname)
    if cfg.TEST.EVALUATOR != "Classification":
        raise ValueError(f"TEST.EVALUATOR '{cfg.TEST.EVALUATOR}' is not supported; use Classification or MultiLabelClassification")
    cmat = os.path.join(cfg.OUTPUT_DIR, "cmat.pt") if cfg.TEST.COMPUTE_CMAT else None
    return Classification(lab2cname, per_class=cfg.TEST.PER_CLASS_RESULT, cmat_path=cmat)
