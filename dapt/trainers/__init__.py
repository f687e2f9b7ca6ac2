"""Registered trainers; importing this package imports every module in it, so each
``PromptTrainer`` subclass defined here registers itself (and its method and config node)."""
import importlib
import pkgutil

import dapt.decouple.config  # noqa: F401  registers the DAPT config node

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
