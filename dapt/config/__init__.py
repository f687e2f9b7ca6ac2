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


class CfgNode(CN):
    """The root config: a yacs ``CfgNode`` whose ``merge_from_file`` also follows ``_BASE_``."""

    def merge_from_file(self, cfg_filename: str) -> None:
        merge_from_file(self, cfg_filename)


def get_cfg_default() -> CN:
    """The full default config: engine keys and every registered part's keys (importing ``dapt``
    registers the built-in parts: methods, DAPT, datasets)."""
    cfg = get_base_cfg()
    for fn in _CONFIG_FUNCS:
        fn(cfg)
    return CfgNode(cfg)


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


BASE_KEY = "_BASE_"  # a YAML key naming the file(s) this one extends, relative to it


def merge_from_file(cfg: CN, path: str, _chain: tuple = ()) -> None:
    """``cfg.merge_from_file`` with a one-line error naming the file and the closest key.

    A file may start from others with ``_BASE_: other.yaml`` (or a list, merged in order; paths
    relative to the file): the bases are merged first, then the file's own keys. Upstream files
    have no ``_BASE_`` and load exactly as before. A relative ``path`` that is not a file in the
    working directory is looked up among the shipped configs (``dapt.config.paths``)."""
    import os

    from dapt.config.paths import resolve_config

    path = resolve_config(path) if not _chain else path
    if not os.path.isfile(path):
        where = f" (the {BASE_KEY} of {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file {path} does not exist{where}")
    real = os.path.realpath(path)
    if real in _chain:
        raise ConfigError(f"{path}: {BASE_KEY} loops back to itself ({' -> '.join(_chain + (real,))})")
    import yaml

    try:
        data = _own_keys_if_based(path)
        if data is None:
            CN.merge_from_file(cfg, path)
            return
        bases = data.pop(BASE_KEY)
        for base in [bases] if isinstance(bases, str) else list(bases):
            merge_from_file(cfg, os.path.join(os.path.dirname(path), str(base)), _chain + (real,))
        cfg.merge_from_other_cfg(CN(data))
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    except KeyError as exc:
        raise _wrap_key_error(cfg, exc, path) from None
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path}: {exc}") from None


def _own_keys_if_based(path: str):
    """The file's mapping when it has a ``_BASE_`` key, else None (yacs reads it as usual)."""
    import yaml

    with open(path) as f:
        text = f.read()
    if BASE_KEY not in text:
        return None
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or BASE_KEY not in data:
        return None
    if not isinstance(data[BASE_KEY], (str, list)) or not data[BASE_KEY]:
        raise ConfigError(f"{path}: {BASE_KEY} must name a file or a list of files")
    return data


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


def flatten(d, prefix: str = "") -> dict:
    """A nested mapping (a loaded config.yaml, ``yaml.safe_load(cfg.dump())``) as {"A.B.C": value}."""
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
