"""Where a config file given as a relative path is found: the working directory first, then the
configs shipped with the package (``dapt/configs`` in an installed wheel; the checkout's top-level
``configs/`` folder, the source of those files, in a source tree or an editable install)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

_PKG = Path(__file__).resolve().parents[1]


def shipped_config_dirs() -> List[Path]:
    """The folders holding the shipped configs, installed copy first."""
    return [d for d in (_PKG / "configs", _PKG.parent / "configs") if d.is_dir()]


def resolve_config(path: str) -> str:
    """``path`` itself when it is a file (relative to the working directory) or absolute; else the
    shipped config of that name (``configs/trainers/X.yaml`` and ``trainers/X.yaml`` both name
    ``<shipped>/trainers/X.yaml``); else ``path`` unchanged (the caller reports it missing)."""
    if not path or os.path.isabs(path) or os.path.isfile(path):
        return path
    rel = Path(path)
    if rel.parts and rel.parts[0] == "configs":
        rel = Path(*rel.parts[1:]) if len(rel.parts) > 1 else Path()
    for d in shipped_config_dirs():
        if (d / rel).is_file():
            return str(d / rel)
    return path
