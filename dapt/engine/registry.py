"""Old import path of ``Registry`` (kept for researchers' code); it lives in ``dapt.utils.registry``."""
from dapt.utils.registry import Registry

__all__ = ["Registry"]
