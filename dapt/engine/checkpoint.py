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
from typing import List, Optional

import numpy as np
import torch

from dapt.utils.atomic import atomic_torch_save, atomic_write_text  # noqa: F401  (re-exported: old import path)
from dapt.utils.misc import plural

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


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint that cannot be read, or a state that must not be saved (one line for the user)."""


def nonfinite_tensors(obj, prefix: str = "") -> List[str]:
    """Names (dotted paths) of the floating-point tensors in ``obj`` holding NaN or inf."""
    bad: List[str] = []
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            bad.append(prefix or "<tensor>")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            bad += nonfinite_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad += nonfinite_tensors(v, f"{prefix}.{i}" if prefix else str(i))
    return bad


def save_checkpoint(state: dict, directory: Path, epoch: int, is_best: bool = False, save_epoch: bool = True) -> None:
    """Write ``model.pth.tar-<epoch>`` (and ``model-best.pth.tar`` when best), atomically.

    A state holding a NaN or inf in its weights or optimizer is refused (CheckpointError), so the
    last good checkpoint stays the latest."""
    directory = Path(directory)
    bad = nonfinite_tensors({k: state.get(k) for k in ("state_dict", "optimizer", "scaler") if state.get(k)})
    if bad:
        raise CheckpointError(f"not saving epoch {epoch} to {directory}: {bad[0]} holds NaN/inf values "
                              f"({plural(len(bad), 'tensor')} affected)")
    if save_epoch:
        name = f"model.pth.tar-{epoch}"
        atomic_torch_save(state, directory / name)
        atomic_write_text(directory / "checkpoint", name + "\n")
        logger.info("Checkpoint saved to %s", directory / name)
    if is_best:
        atomic_torch_save(state, directory / "model-best.pth.tar")
        logger.info("Best checkpoint saved to %s", directory / "model-best.pth.tar")


def list_checkpoints(directory: Path) -> List[Path]:
    """Every ``model.pth.tar-N`` in ``directory``, newest (highest N) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(directory: Path) -> Optional[Path]:
    """The highest-numbered ``model.pth.tar-N`` in ``directory``, if any."""
    found = list_checkpoints(directory)
    return found[0] if found else None


TMP_RE = re.compile(r"^.+\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_torch_save / atomic_write_text leave on kill -9


def remove_stale_temp_files(directory: Path) -> List[Path]:
    """Delete the temporary files a killed writer left in ``directory`` and its subfolders (one level).
    Call it only while holding the folder's lock."""
    directory = Path(directory)
    removed: List[Path] = []
    if not directory.is_dir():
        return removed
    folders = [directory] + [p for p in directory.iterdir() if p.is_dir() and not p.is_symlink()]
    for d in folders:
        for p in d.iterdir():
            if p.is_file() and TMP_RE.match(p.name):
                p.unlink()
                removed.append(p)
    if removed:
        logger.info("Removed %s left by an interrupted run: %s", plural(len(removed), "temporary file"),
                    ", ".join(str(p) for p in removed))
    return removed


class InertObject:
    """Stands in for an optimizer or scheduler object pickled inside a Dassl checkpoint (Dassl's
    warm-up scheduler keeps its successor scheduler, and with it the optimizer, in its state dict):
    the fields are kept as plain data in ``fields``; none of the class's code runs."""

    def __setstate__(self, state):
        self.__dict__["fields"] = state


def _dassl_object_globals() -> list:
    """(InertObject, name) for torch's scheduler and optimizer classes: the only objects a Dassl /
    upstream checkpoint (MaPLe, PromptSRC, PromptKD releases) holds besides tensors and containers."""
    import inspect

    pairs = []
    for name, obj in vars(torch.optim.lr_scheduler).items():
        if inspect.isclass(obj) and issubclass(obj, torch.optim.lr_scheduler.LRScheduler):
            pairs.append((InertObject, f"torch.optim.lr_scheduler.{name}"))
    for name, obj in vars(torch.optim).items():
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer):
            pairs += [(InertObject, f"{obj.__module__}.{obj.__name__}"), (InertObject, f"torch.optim.{name}")]
    # an optimizer's state is a defaultdict(dict): rebuilt as a plain dict (its factory is never called)
    return pairs + [(_plain_dict, "collections.defaultdict"), dict]


def _plain_dict(*_args) -> dict:
    return {}


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint with ``weights_only=True``; Dassl checkpoints whose scheduler state holds
    pickled scheduler / optimizer objects load too (those objects become ``InertObject``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check --model-dir / --load-epoch")
    try:
        with torch.serialization.safe_globals(_dassl_object_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {msg}") from exc
