"""Reading pickles from data folders without letting them run code.

A pickle names Python objects by (module, name) and may call them while it loads, so an
unrestricted ``pickle.load`` of a file under ``$DATA`` runs whatever that file asks for. The
readers here resolve only an allow-list of exact (module, name) pairs: plain containers and
scalars, numpy arrays/dtypes/scalars rebuilt through numpy's own reconstruction helpers, and the
data classes the caller names (e.g. ``Datum``, also under Dassl's module path). Any other global
stops the load with one line that names the file, the global and what to do.

Everything callable that a pickle may reach is created afresh for each load, so a crafted file
cannot rebind attributes on objects that outlive it; ``numpy.ndarray`` resolves to a marker that
numpy's ``_reconstruct`` accepts but that cannot be called (calling ``ndarray`` with a raw buffer
would build object arrays from arbitrary pointers).
"""
from __future__ import annotations

import codecs
import io
import pickle
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

DEFAULT_FIX = "delete it (caches are regenerated) or re-download it from a source you trust"


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A data file names a global outside the allow-list (or misuses an allowed one)."""


def _numpy_attr(submodule: str, name: str):
    """``numpy._core.<submodule>.<name>`` (numpy >= 2) or ``numpy.core.<submodule>.<name>`` (numpy 1.x)."""
    import importlib

    for base in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{base}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{name}")


_RECONSTRUCT = _numpy_attr("multiarray", "_reconstruct")
_SCALAR = _numpy_attr("multiarray", "scalar")
_FROMBUFFER = _numpy_attr("numeric", "_frombuffer")

# names of plain data types; pickle protocols >= 2 write most of them with their own opcodes
_PLAIN = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("builtins", "object"): object,  # the base class argument of copyreg._reconstructor
    ("collections", "OrderedDict"): OrderedDict,
    ("numpy", "dtype"): np.dtype,
    # C functions of numpy (their attributes cannot be rebound)
    ("numpy._core.multiarray", "_reconstruct"): None,  # wrapped per load, below
    ("numpy.core.multiarray", "_reconstruct"): None,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.numeric", "_frombuffer"): None,  # a Python function in numpy: wrapped per load
    ("numpy.core.numeric", "_frombuffer"): None,
    ("numpy", "ndarray"): None,  # a marker, see module docstring
    ("_codecs", "encode"): None,  # bytes under protocols <= 2: latin-1 only
    ("copyreg", "_reconstructor"): None,  # objects under protocols 0/1: allowed classes only
}
# protocols 0-2 write Python 2 module names (pickle's fix_imports)
for _name in ("set", "frozenset", "bytearray", "complex", "object"):
    _PLAIN[("__builtin__", _name)] = _PLAIN[("builtins", _name)]
_PLAIN[("copy_reg", "_reconstructor")] = None


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` inside one load; only ``_reconstruct`` accepts it."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError("numpy.ndarray is called directly (only array reconstruction is allowed)")


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only allow-listed globals plus ``classes``.

    ``classes`` maps (module, name) pairs as they appear in the file to the class to build.
    """

    def __init__(self, file, classes: Optional[Mapping[Tuple[str, str], type]] = None):
        super().__init__(file)
        self._classes = dict(classes or {})
        marker = _NdarrayMarker()
        allowed_classes = set(self._classes.values())

        def reconstruct(subtype, shape, dtype):
            if subtype is not marker:
                raise UnsafePickleError("numpy _reconstruct is asked for a type other than numpy.ndarray")
            return _RECONSTRUCT(np.ndarray, shape, dtype)

        def frombuffer(buf, dtype, shape, order):
            return _FROMBUFFER(buf, dtype, shape, order)

        def encode(obj, encoding="utf-8", errors="strict"):
            if str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1", "iso8859-1"):
                raise UnsafePickleError(f"_codecs.encode is asked for encoding {encoding!r} (only latin-1 is allowed)")
            return codecs.encode(obj, "latin-1", errors)

        def reconstructor(cls, base, state):
            if cls not in allowed_classes or base is not object or state is not None:
                raise UnsafePickleError("copyreg._reconstructor is asked for a class outside the allow-list")
            return object.__new__(cls)

        wrapped = {"_reconstruct": reconstruct, "_frombuffer": frombuffer, "ndarray": marker,
                   "encode": encode, "_reconstructor": reconstructor}
        self._resolved: Dict[Tuple[str, str], Any] = {
            key: (wrapped[key[1]] if value is None else value) for key, value in _PLAIN.items()}
        self._resolved.update(self._classes)

    def find_class(self, module: str, name: str):
        try:
            return self._resolved[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"it references {module}.{name}, which is not on the allow-list of a data "
                                    "file (it could run code)") from None


def loads_restricted(stream: io.IOBase, path: str, classes: Optional[Mapping[Tuple[str, str], type]] = None,
                     fix: str = DEFAULT_FIX):
    """Unpickle one object from the open binary ``stream`` (read from ``path``) through the allow-list.

    Raises ``UnsafePickleError`` (a ``ValueError``) naming ``path`` for a forbidden global and
    ``ValueError`` for any other unreadable content; both messages are one line ending in ``fix``.
    """
    try:
        return SafeUnpickler(stream, classes).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"refusing to load {path}: {exc}; {fix}") from None
    except RecursionError:
        raise ValueError(f"{path} cannot be unpickled (nested too deeply); {fix}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a crafted or damaged file gets the same one line
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"{path} cannot be unpickled ({type(exc).__name__}: {detail}); {fix}") from None


def load_pickle_file(path: str, classes: Optional[Mapping[Tuple[str, str], type]] = None, fix: str = DEFAULT_FIX):
    """``pickle.load`` of the file at ``path`` through the allow-list (see ``loads_restricted``)."""
    with open(path, "rb") as f:
        return loads_restricted(f, path, classes, fix)


def load_npy(path: str, fix: str = DEFAULT_FIX):
    """``np.load(path)`` of a ``.npy`` file; arrays of Python objects (e.g. a saved dict) are
    unpickled through the allow-list instead of ``allow_pickle=True``."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                shape, fortran, dtype = np.lib.format._read_array_header(f, version)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{path} is not a valid .npy file ({exc}); {fix}") from None
        if not dtype.hasobject:
            f.seek(0)
            try:
                return np.load(f, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise ValueError(f"{path} is not a valid .npy file ({exc}); {fix}") from None
        arr = loads_restricted(f, path, None, fix)
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{path} holds a {type(arr).__name__}, not an array; {fix}")
    return arr


__all__ = ["UnsafePickleError", "SafeUnpickler", "loads_restricted", "load_pickle_file", "load_npy", "DEFAULT_FIX"]
