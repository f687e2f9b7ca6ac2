"""Name -> class registries (trainers, methods, datasets), in the Dassl/detectron2 style."""
from __future__ import annotations

import difflib
from typing import Dict, Iterable, Optional


class Registry:
    """A named map from strings to objects, filled with the ``register`` decorator.

    >>> TRAINERS = Registry("TRAINER")
    >>> @TRAINERS.register()
    ... class CoOp: ...
    >>> TRAINERS.get("CoOp")
    """

    def __init__(self, name: str):
        self._name = name
        self._obj_map: Dict[str, object] = {}

    def _do_register(self, name: str, obj: object, force: bool = False) -> None:
        if name in self._obj_map and not force:
            raise KeyError(f"An object named '{name}' is already registered in the {self._name} registry")
        self._obj_map[name] = obj

    def register(self, obj: Optional[object] = None, name: Optional[str] = None, force: bool = False):
        """Register ``obj`` under ``name`` (default: its ``__name__``); usable as a decorator."""
        if obj is None:
            def deco(fn_or_class):
                self._do_register(name or fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class
            return deco
        self._do_register(name or obj.__name__, obj, force=force)
        return obj

    def get(self, name: str):
        if name not in self._obj_map:
            close = difflib.get_close_matches(name, list(self._obj_map), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise KeyError(
                f"'{name}' is not in the {self._name} registry{hint} (registered: {', '.join(sorted(self._obj_map))})"
            )
        return self._obj_map[name]

    def names(self) -> Iterable[str]:
        return sorted(self._obj_map)

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __iter__(self):
        return iter(self._obj_map.items())


# The registries every layer can reach without importing upwards. Methods register their
# ``PromptMethod`` subclass in METHOD_REGISTRY (dapt/methods); the trainers that drive them
# (dapt/trainers) register in TRAINER_REGISTRY; datasets register in dapt.data.DATASET_REGISTRY.
TRAINER_REGISTRY = Registry("TRAINER")
METHOD_REGISTRY = Registry("METHOD")
