"""Keys that exist only so that Dassl / upstream YAML files load: accepted for compatibility, ignored.

``warn_ignored_keys(cfg)`` logs a warning for each one set to a value other than its default, so a
setting that would change a Dassl run never goes silently unused.
"""
from __future__ import annotations

import logging
from typing import List

from dapt.config.defaults import get_base_cfg

logger = logging.getLogger(__name__)

COMPAT_KEYS = (
    "VERSION",
    "INPUT.RANDAUGMENT_N",
    "INPUT.RANDAUGMENT_M",
    "DATASET.TARGET_DOMAINS",
    "DATASET.NUM_LABELED",
    "DATASET.STL10_FOLD",
    "DATASET.VAL_PERCENT",
    "DATASET.CIFAR_C_TYPE",
    "DATASET.CIFAR_C_LEVEL",
    "DATASET.ALL_AS_UNLABELED",
    "DATALOADER.TRAIN_X.N_DOMAIN",
    "DATALOADER.TRAIN_X.N_INS",
    "DATALOADER.TRAIN_U.N_DOMAIN",
    "DATALOADER.TRAIN_U.N_INS",
    "MODEL.HEAD.NAME",
    "MODEL.HEAD.HIDDEN_LAYERS",
    "MODEL.HEAD.ACTIVATION",
    "MODEL.HEAD.BN",
    "MODEL.HEAD.DROPOUT",
    "OPTIM.STAGED_LR",
    "OPTIM.NEW_LAYERS",
    "OPTIM.BASE_LR_MULT",
    "OPTIM_SELECTION.STAGED_LR",
    "OPTIM_SELECTION.NEW_LAYERS",
    "OPTIM_SELECTION.BASE_LR_MULT",
    "TRAIN.COUNT_ITER",
)


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def ignored_keys_set(cfg) -> List[str]:
    """The compatibility keys whose value in ``cfg`` differs from the default."""
    base = get_base_cfg()
    return [k for k in COMPAT_KEYS if _get(cfg, k) != _get(base, k)]


def warn_ignored_keys(cfg) -> List[str]:
    keys = ignored_keys_set(cfg)
    for k in keys:
        logger.warning("config key %s = %r is accepted for compatibility and ignored (it has no effect here)",
                       k, _get(cfg, k))
    return keys
