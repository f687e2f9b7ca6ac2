"""The trainer registry (defined in ``dapt.utils.registry``; this is its usual import path) and ``build_trainer``."""
from dapt.utils.registry import TRAINER_REGISTRY

__all__ = ["TRAINER_REGISTRY", "build_trainer"]


def build_trainer(cfg, **kwargs):
    """Instantiate the trainer named by TRAINER.NAME (importing ``dapt`` registers the built-in ones)."""
    if not cfg.TRAINER.NAME:
        raise ValueError("TRAINER.NAME is empty: pass --trainer NAME (e.g. CoOp, ZeroshotCLIP)")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg, **kwargs)
