"""Atomic file writing: a temporary file in the same folder, fsync, then a rename over the target,
so a reader never sees half a file (checkpoints, configs, manifests, weights).

New files get the permissions the user's umask gives (not mkstemp's 0600); on any failure (disk
full, Ctrl-C) the temporary file is removed, the target is left as it was, and an ``OSError``
names the target path.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO

import torch


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


def atomic_write(path: Path, write: Callable[[IO], None], binary: bool = True) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, fsync it, rename it over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _with_filename(exc, path) from exc
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _with_filename(exc, path) from exc
        raise


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path``, atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, atomically."""
    atomic_write(path, lambda f: f.write(text), binary=False)
