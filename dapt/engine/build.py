"""The trainer registry."""
from dapt.engine.registry import Registry

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg, **kwargs):
    """Instantiate the trainer named by TRAINER.NAME."""
    import dapt.trainers  # noqa: F401  (registers the built-in trainers)

    if not cfg.TRAINER.NAME:
        raise ValueError("TRAINER.NAME is empty: pass --trainer NAME (e.g. CoOp, ZeroshotCLIP)")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg, **kwargs)
