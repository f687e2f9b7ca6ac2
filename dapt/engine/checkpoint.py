"""Dassl-named checkpoints, written atomically and read with ``weights_only=True``.

Layout: ``<output>/<ModelName>/model.pth.tar-<epoch>`` (1-based, as Dassl), ``model-best.pth.tar``
and a ``checkpoint`` file naming the latest. A checkpoint holds the method's learnable state
(not the frozen CLIP), the optimizer, the scheduler, the scaler and every RNG state, so a
resumed run continues bit for bit.
"""
from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

logger = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^model\.pth\.tar-(\d+)$")


def atomic_torch_save(obj, path: Path) -> None:
    """Save to a temporary file in the same folder, fsync, then rename over ``path``.

    The file gets the permissions the user's umask gives a new file (not mkstemp's 0600); on any
    failure (disk full, Ctrl-C) the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _with_filename(exc, path) from exc
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _with_filename(exc, path) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file, fsync, rename over ``path`` (umask permissions, no temp left)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _with_filename(exc, path) from exc
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _with_filename(exc, path) from exc
        raise


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask (0o666 & ~umask)."""
    umask = None
    try:  # Linux >= 4.7 reports it without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except OSError:
        pass
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _with_filename(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name when it has none (a failed write names no file)."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


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
                              f"({len(bad)} tensor(s) affected)")
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
        logger.info("Removed %d temporary file(s) left by an interrupted run: %s", len(removed),
                    ", ".join(str(p) for p in removed))
    return removed


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check --model-dir / --load-epoch")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {msg}") from exc
