"""Dassl-named checkpoints, written atomically and read with ``weights_only=True``.

Layout: ``<output>/<ModelName>/model.pth.tar-<epoch>`` (1-based, as Dassl), ``model-best.pth.tar``
and a ``checkpoint`` file naming the latest. A checkpoint holds the method's learnable state
(not the frozen CLIP), the optimizer, the scheduler, the scaler and every RNG state, so a
resumed run continues bit for bit.
"""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dapt.utils.atomic import atomic_torch_save, atomic_write_text  # noqa: F401  (re-exported: old import path)

logger = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^model\.pth\.tar-(\d+)$")


def get_rng_state() -> dict:
    """All RNG states, in types that ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, directory: Path, epoch: int, is_best: bool = False, save_epoch: bool = True) -> None:
    """Write ``model.pth.tar-<epoch>`` (and ``model-best.pth.tar`` when best), atomically."""
    directory = Path(directory)
    if save_epoch:
        name = f"model.pth.tar-{epoch}"
        atomic_torch_save(state, directory / name)
        atomic_write_text(directory / "checkpoint", name + "\n")
        logger.info("Checkpoint saved to %s", directory / name)
    if is_best:
        atomic_torch_save(state, directory / "model-best.pth.tar")
        logger.info("Best checkpoint saved to %s", directory / "model-best.pth.tar")


def latest_checkpoint(directory: Path) -> Optional[Path]:
    """The highest-numbered ``model.pth.tar-N`` in ``directory``, if any."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CKPT_RE.match(p.name))]
    return max(found)[1] if found else None


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check --model-dir / --load-epoch")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read checkpoint {path}: {exc}") from exc
