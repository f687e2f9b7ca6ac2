"""The dataset registry and ``build_dataset``."""
from __future__ import annotations

import importlib
import logging
import pkgutil

from dapt.utils.registry import Registry

logger = logging.getLogger(__name__)

DATASET_REGISTRY = Registry("DATASET")


def import_dataset_modules() -> None:
    """Import every module of ``dapt.data.datasets`` so that each registers its classes."""
    import dapt.data.datasets as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")


def build_dataset(cfg):
    """The dataset named by ``cfg.DATASET.NAME``, built from ``cfg``."""
    import_dataset_modules()
    name = cfg.DATASET.NAME
    if not name:
        raise ValueError("DATASET.NAME is empty; pass --dataset-config-file configs/datasets/<name>.yaml")
    try:
        cls = DATASET_REGISTRY.get(name)
    except KeyError as exc:
        raise KeyError(f"DATASET.NAME: {exc.args[0]}") from None
    logger.info("Loading dataset: %s", name)
    return cls(cfg)
