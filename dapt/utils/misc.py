"""Seeding and device selection."""
from __future__ import annotations

import logging
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)


def set_random_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices); a negative seed does nothing (Dassl)."""
    if seed is None or seed < 0:
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(cfg) -> torch.device:
    """CUDA when USE_CUDA and a GPU is available, else CPU."""
    if cfg.USE_CUDA and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def plural(n: int, word: str, many: str = "") -> str:
    """``1 seed``, ``3 seeds`` (``many`` for an irregular plural: ``plural(2, "class", "classes")``)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
