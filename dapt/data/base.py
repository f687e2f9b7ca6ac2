"""Datum, DatasetBase and the CoOp split / few-shot helpers that every dataset module uses.

The behaviour follows Dassl's ``DatasetBase`` and CoOp's ``OxfordPets`` helpers, so split files
(``split_zhou_*.json``) and few-shot caches (``split_fewshot/shot_K-seed_S.pkl``) that researchers
already have keep working, including caches pickled by Dassl (see ``load_pickle``).

Labels: an ``int`` for single-label data; for multi-label data (``DatasetBase.multi_label``) a
multi-hot ``list`` of 0/1 ints with one entry per class.
"""
from __future__ import annotations

import json
import logging
import math
import os
import pickle
import random
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from dapt.utils.atomic import atomic_write
from dapt.utils.safe_pickle import load_pickle_file

logger = logging.getLogger(__name__)

Label = Union[int, List[int]]


class _SealedClass(type):
    """Class attributes cannot be rebound (a crafted pickle could otherwise do so while loading)."""

    def __setattr__(cls, name, value):
        raise AttributeError(f"{cls.__name__} is sealed; cannot set {name}")

    def __delattr__(cls, name):
        raise AttributeError(f"{cls.__name__} is sealed; cannot delete {name}")


class Datum(metaclass=_SealedClass):
    """One sample: image path, label, domain and class name.

    The private attribute names match Dassl's ``Datum`` so that few-shot caches pickled by Dassl
    unpickle into this class (see ``load_pickle``).
    """

    def __init__(self, impath: str = "", label: Label = 0, domain: int = 0, classname: str = ""):
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> Label:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return f"Datum(impath={self._impath!r}, label={self._label!r}, domain={self._domain}, classname={self._classname!r})"


def listdir_nohidden(path: str, sort: bool = False) -> List[str]:
    """Entries of ``path`` that do not start with a dot (Dassl's helper)."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


# ---------------------------------------------------------------------------------------- split JSON
def read_json(path: str):
    try:
        with open(path, "r") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); re-download it or delete it to regenerate") from None


def write_json(obj, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def read_split(filepath: str, path_prefix: str, keys: Sequence[str] = ("train", "val", "test")) -> Tuple[List[Datum], ...]:
    """Read a CoOp split file ``{"train"|"val"|"test": [[relpath, label, classname], ...]}``.

    Image paths are joined to ``path_prefix``; labels become ints. ``keys``: the lists to return, in order.
    """
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"split file {filepath} does not exist; see datasets/README.md for where to get it")
    split = read_json(filepath)
    out = []
    for key in keys:
        if key not in split:
            raise ValueError(f"split file {filepath} has no '{key}' list; re-download it (CoOp's split_zhou_*.json)")
        items = []
        for entry in split[key]:
            if len(entry) != 3:
                raise ValueError(f"split file {filepath}: '{key}' entry {entry!r} is not [relpath, label, classname]")
            rel, label, classname = entry
            items.append(Datum(impath=os.path.join(path_prefix, rel), label=int(label), classname=classname))
        out.append(items)
    logger.info("Read split from %s", filepath)
    return tuple(out)


def save_split(train: Sequence[Datum], val: Sequence[Datum], test: Sequence[Datum], filepath: str,
               path_prefix: str) -> None:
    """Write a CoOp split file, storing image paths relative to ``path_prefix``."""

    prefix = path_prefix.rstrip("/" + os.sep) + os.sep

    def rel(items):
        out = []
        for d in items:
            p = d.impath[len(prefix):] if d.impath.startswith(prefix) else d.impath
            out.append((p, d.label, d.classname))
        return out

    write_json({"train": rel(train), "val": rel(val), "test": rel(test)}, filepath)
    logger.info("Saved split to %s", filepath)


def split_trainval(trainval: Sequence[Datum], p_val: float = 0.2, rng=None) -> Tuple[List[Datum], List[Datum]]:
    """CoOp's per-class random train/val split: ``round(n * p_val)`` images of each class go to val."""
    rng = rng or random
    p_trn = 1 - p_val
    logger.info("Splitting trainval into %.0f%% train and %.0f%% val", p_trn * 100, p_val * 100)
    tracker = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            raise ValueError(f"class {label} has too few images ({len(idxs)}) for a {p_val:.0%} validation split")
        rng.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def read_and_split_data(image_dir: str, p_trn: float = 0.5, p_val: float = 0.2, ignored: Sequence[str] = (),
                        new_cnames: Optional[Dict[str, str]] = None, rng=None):
    """Split a folder-per-class image tree into train/val/test per class (CoOp's DTD helper).

    Used only when a dataset's split file is missing.
    """
    rng = rng or random
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    p_tst = 1 - p_trn - p_val
    logger.info("Splitting into %.0f%% train, %.0f%% val and %.0f%% test", p_trn * 100, p_val * 100, p_tst * 100)
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        cdir = os.path.join(image_dir, category)
        images = [os.path.join(cdir, im) for im in listdir_nohidden(cdir)]
        rng.shuffle(images)
        n_total = len(images)
        n_train = round(n_total * p_trn)
        n_val = round(n_total * p_val)
        n_test = n_total - n_train - n_val
        if min(n_train, n_val, n_test) <= 0:
            raise ValueError(f"{cdir} has too few images ({n_total}) to split into train/val/test")
        name = new_cnames.get(category, category) if new_cnames else category
        train += [Datum(impath=p, label=label, classname=name) for p in images[:n_train]]
        val += [Datum(impath=p, label=label, classname=name) for p in images[n_train:n_train + n_val]]
        test += [Datum(impath=p, label=label, classname=name) for p in images[n_train + n_val:]]
    return train, val, test


# ---------------------------------------------------------------------------------------- subsampling
def subsample_classes(*args: Sequence[Datum], subsample: str = "all"):
    """Keep the base (first ``ceil(n/2)``) or new (remaining) classes, relabelled from 0 (CoOp).

    The label set is taken from the first argument (the training data), as in CoOp; a ``None``
    argument (a dataset without a validation split) is passed through.
    """
    if subsample not in ("all", "base", "new"):
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be all, base or new, got '{subsample}'")
    if subsample == "all":
        return args
    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    logger.info("Subsampling %s classes (%d of %d)", subsample, len(selected), len(labels))
    relabel = {y: i for i, y in enumerate(selected)}
    output = []
    for data in args:
        if data is None:
            output.append(None)
            continue
        output.append([Datum(impath=d.impath, label=relabel[d.label], domain=d.domain, classname=d.classname)
                       for d in data if d.label in relabel])
    return output


# ---------------------------------------------------------------------------------------- few-shot cache
# the classes a few-shot cache or preprocessed.pkl may hold, by the (module, name) written in the file
DATUM_CLASSES = {
    ("dapt.data.base", "Datum"): Datum,
    ("dassl.data.datasets.base_dataset", "Datum"): Datum,  # caches written by CoOp / MaPLe / DAPT (Dassl)
}


def load_pickle(path: str, fix: str = "delete it and it will be regenerated"):
    """Unpickle a data cache through the allow-list of ``dapt.utils.safe_pickle`` (plain data,
    numpy arrays and ``Datum``); a file naming anything else is refused with a one-line ``ValueError``."""
    return load_pickle_file(path, DATUM_CLASSES, fix)


def save_pickle(obj, path: str) -> bool:
    """Write ``obj`` atomically (temp file + rename, umask permissions); returns False (with a
    warning) if the location is not writable."""
    try:
        atomic_write(Path(path), lambda f: pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL))
        return True
    except OSError as exc:
        logger.warning("Could not write %s (%s); continuing without the cache", path, exc)
        return False


def rebase_paths(items: Sequence[Datum], dataset_dir: str, source: str = "") -> List[Datum]:
    """Point cached absolute paths at ``dataset_dir`` when the cache was written under another root.

    CoOp caches store absolute paths; a ``$DATA`` folder that moved (or is mounted elsewhere on a
    cluster) would otherwise give missing files. The part after the last ``/<dataset folder>/`` is kept.
    ``source`` (the cache file) is named when ``items`` is not a list of ``Datum``.
    """
    if not isinstance(items, (list, tuple)) or not all(
            isinstance(d, Datum) and isinstance(getattr(d, "_impath", None), str) for d in items):
        raise ValueError(f"{source or 'a cache'} does not hold lists of Datum; delete it and it will be regenerated")
    dataset_dir = os.path.normpath(dataset_dir)
    base = os.sep + os.path.basename(dataset_dir) + os.sep
    out = []
    for d in items:
        p = d.impath
        if not p.startswith(dataset_dir + os.sep):
            k = p.rfind(base)
            if k >= 0:
                p = os.path.join(dataset_dir, p[k + len(base):])
                d = Datum(impath=p, label=d.label, domain=d.domain, classname=d.classname)
        out.append(d)
    return out


def fewshot_cache_path(split_fewshot_dir: str, num_shots: int, seed: int) -> str:
    return os.path.join(split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.pkl")


def seeded_rng(seed: int):
    """``random.Random(seed)`` for a non-negative seed (the same draws CoOp gets from the freshly
    seeded global ``random``), else the global ``random`` module."""
    return random.Random(seed) if seed is not None and seed >= 0 else random


# ---------------------------------------------------------------------------------------- base class
class DatasetBase:
    """A dataset: lists of ``Datum`` for train_x (labelled), train_u (unlabelled), val and test.

    Class names and the label -> name map are read from all splits (see ``get_lab2cname``) unless
    ``classnames`` is given (multi-label datasets, whose labels are multi-hot lists).
    """

    dataset_dir = ""  # folder name under DATASET.ROOT; subclasses replace it by the full path
    domains: List[str] = []
    multi_label = False

    def __init__(self, train_x=None, train_u=None, val=None, test=None, classnames: Optional[Sequence[str]] = None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        if classnames is not None:
            self._classnames = list(classnames)
            self._lab2cname = {i: c for i, c in enumerate(self._classnames)}
            self._num_classes = len(self._classnames)
        else:
            source = getattr(self, "split_path", "") or type(self).__name__
            self._lab2cname, self._classnames = self.get_lab2cname(train_x or [], val, test, source=source)
            self._num_classes = len(self._classnames)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> List[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        """max label + 1 (Dassl)."""
        labels = {d.label for d in data_source}
        return max(labels) + 1 if labels else 0

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum], *more: Optional[Sequence[Datum]], source: str = ""):
        """({label: classname}, [name of label 0, 1, ..., max label]) from the data.

        Dassl reads the training data alone, so a class without training images shifted the name
        of every later label; here every split given contributes, so ``classnames[k]`` is always
        the name of label ``k``. A label below the largest one that no image carries, or a label
        with two names, is refused with one line naming ``source`` (the split file).
        """
        mapping: Dict[int, str] = {}
        where = source or "the dataset"
        for items in (data_source, *more):
            for d in items or []:
                name = mapping.setdefault(d.label, d.classname)
                if name != d.classname:
                    raise ValueError(f"{where}: label {d.label} is named both '{name}' and '{d.classname}'; "
                                     "fix the split file (one name per label)")
        if not mapping:
            return {}, []
        n = max(mapping) + 1
        unknown = [k for k in range(n) if k not in mapping]
        if unknown:
            raise ValueError(f"{where}: label(s) {unknown[:5]} of 0..{n - 1} have no image in any split, so their "
                             "class names are unknown; fix the split file (labels must be 0..C-1)")
        return {k: mapping[k] for k in range(n)}, [mapping[k] for k in range(n)]

    @staticmethod
    def split_dataset_by_label(data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        out = defaultdict(list)
        for d in data_source:
            out[d.label].append(d)
        return out

    @staticmethod
    def split_dataset_by_domain(data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        out = defaultdict(list)
        for d in data_source:
            out[d.domain].append(d)
        return out

    def generate_fewshot_dataset(self, *data_sources, num_shots: int = -1, repeat: bool = False, rng=None):
        """Sample ``num_shots`` items per class from each data source (Dassl).

        A class with fewer items keeps all of them (or samples with replacement if ``repeat``).
        ``rng`` (default: the global ``random``) is a ``random.Random``-like source.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        rng = rng or random
        logger.info("Creating a %d-shot dataset", num_shots)
        output = []
        for data in data_sources:
            sampled = []
            for _, items in self.split_dataset_by_label(data).items():
                if len(items) >= num_shots:
                    sampled.extend(rng.sample(items, num_shots))
                elif repeat:
                    sampled.extend(rng.choices(items, k=num_shots))
                else:
                    sampled.extend(items)
            output.append(sampled)
        return output[0] if len(output) == 1 else output

    # the CoOp helpers, reachable the way upstream code calls them (OxfordPets.read_split(...))
    read_split = staticmethod(read_split)
    save_split = staticmethod(save_split)
    split_trainval = staticmethod(split_trainval)
    subsample_classes = staticmethod(subsample_classes)

    def load_or_sample_fewshot(self, train, val, num_shots: int, seed: int, split_fewshot_dir: str,
                               with_val: bool = True):
        """CoOp's few-shot step: read ``shot_K-seed_S.pkl`` or sample K per class (val: min(K, 4))
        and write it. Returns (train, val); ``val`` is returned unchanged when ``with_val`` is False."""
        path = fewshot_cache_path(split_fewshot_dir, num_shots, seed)
        if os.path.exists(path):
            logger.info("Loading preprocessed few-shot data from %s", path)
            data = load_pickle(path)
            if not isinstance(data, dict) or "train" not in data:
                raise ValueError(f"{path} does not hold a few-shot split ({{'train': ...}}); delete it to regenerate")
            train = rebase_paths(data["train"], self.dataset_dir, path)
            if with_val:
                if "val" not in data:
                    raise ValueError(f"{path} has no 'val' list; delete it to regenerate")
                val = rebase_paths(data["val"], self.dataset_dir, path)
            return train, val
        rng = seeded_rng(seed)
        train = self.generate_fewshot_dataset(train, num_shots=num_shots, rng=rng)
        data = {"train": train}
        if with_val:
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4), rng=rng)
            data["val"] = val
        if save_pickle(data, path):
            logger.info("Saved preprocessed few-shot data to %s", path)
        return train, val
