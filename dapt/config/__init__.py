"""Config assembly: the engine's defaults plus every part's own ``add_*_config``.

A method or a user extension declares its keys next to its code and registers the function:

    from dapt.config import register_config

    @register_config
    def add_mymethod_config(cfg):
        cfg.TRAINER.MYMETHOD = CN()
        cfg.TRAINER.MYMETHOD.N_CTX = 4  # number of context tokens
"""
from __future__ import annotations

import difflib
import re
from typing import Callable, List

from yacs.config import CfgNode as CN

from dapt.config.defaults import get_base_cfg

_CONFIG_FUNCS: List[Callable[[CN], None]] = []


class ConfigError(ValueError):
    """A config file or override that does not fit the defaults."""


def register_config(fn: Callable[[CN], None]) -> Callable[[CN], None]:
    """Register a function that adds config keys; ``get_cfg_default`` calls every one."""
    if fn not in _CONFIG_FUNCS:
        _CONFIG_FUNCS.append(fn)
    return fn


def _import_parts() -> None:
    import dapt.trainers  # noqa: F401  registers the methods' config nodes
    import dapt.data  # noqa: F401

    try:
        from dapt.data.config import add_data_config
    except ImportError:
        add_data_config = None
    if add_data_config is not None:
        register_config(add_data_config)
    try:
        from dapt.data.synthetic.scenes import add_scenes_config
    except ImportError:
        add_scenes_config = None
    if add_scenes_config is not None:
        register_config(add_scenes_config)


def get_cfg_default() -> CN:
    """The full default config: engine keys and every registered part's keys."""
    _import_parts()
    cfg = get_base_cfg()
    for fn in _CONFIG_FUNCS:
        fn(cfg)
    return cfg


def all_keys(cfg: CN, prefix: str = "") -> List[str]:
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CN):
            keys.extend(all_keys(v, full + "."))
    return keys


def _closest(cfg: CN, key: str) -> str:
    keys = all_keys(cfg)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not close:  # compare the last component only, e.g. a typo in a known node
        leaf = key.split(".")[-1]
        by_leaf = {k.split(".")[-1]: k for k in keys}
        m = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        close = [by_leaf[m[0]]] if m else []
    return f" (closest valid key: {close[0]})" if close else ""


def _wrap_key_error(cfg: CN, exc: KeyError, source: str) -> ConfigError:
    msg = str(exc.args[0]) if exc.args else str(exc)
    m = re.search(r"Non-existent config key: (\S+)", msg)
    if m:
        key = m.group(1)
        return ConfigError(f"{source}: unknown config key '{key}'{_closest(cfg, key)}")
    return ConfigError(f"{source}: {msg}")


def merge_from_file(cfg: CN, path: str) -> None:
    """``cfg.merge_from_file`` with a one-line error naming the file and the closest key."""
    import os

    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist")
    import yaml

    try:
        cfg.merge_from_file(path)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    except KeyError as exc:
        raise _wrap_key_error(cfg, exc, path) from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def yaml_error(path: str, exc: Exception) -> ConfigError:
    """One line for a YAML syntax error: the file, the line and the parser's reason."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f", line {mark.line + 1}" if mark is not None else ""
    reason = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return ConfigError(f"{path}{where}: YAML syntax error: {reason}; fix the file")


def merge_from_list(cfg: CN, opts: List[str]) -> None:
    """``cfg.merge_from_list`` for trailing ``KEY VALUE`` overrides, with clear errors."""
    if len(opts) % 2 != 0:
        raise ConfigError(f"overrides must be KEY VALUE pairs; got an odd number: {' '.join(opts)}")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, AssertionError) as exc:
        if isinstance(exc, AssertionError):
            msg = str(exc)
            m = re.search(r"Non-existent key: (\S+)", msg)
            key = m.group(1) if m else msg
            raise ConfigError(f"command line: unknown config key '{key}'{_closest(cfg, key)}") from None
        raise _wrap_key_error(cfg, exc, "command line") from None
    except ValueError as exc:
        raise ConfigError(f"command line: {exc}") from None


__all__ = ["get_cfg_default", "register_config", "merge_from_file", "merge_from_list", "ConfigError", "CN",
           "yaml_error"]
