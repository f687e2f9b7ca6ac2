"""The shared shape of the CoOp benchmark datasets: a folder under DATASET.ROOT, a split file
(or a way to build one), CoOp's few-shot cache and base/new subsampling."""
from __future__ import annotations

import logging
import os
from typing import List, Sequence, Tuple

from dapt.data.base import DatasetBase, Datum, read_split, save_split, seeded_rng, subsample_classes

logger = logging.getLogger(__name__)


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder, split file or list that is not where the CoOp layout puts it."""


def dataset_root(cfg) -> str:
    if not cfg.DATASET.ROOT:
        raise DatasetLayoutError("DATASET.ROOT is empty; pass DATASET.ROOT /path/to/$DATA (the folder that holds "
                                 "the dataset folders)")
    return os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))


def require(path: str, what: str, fix: str = "see datasets/README.md") -> str:
    if not os.path.exists(path):
        raise DatasetLayoutError(f"{what} {path} does not exist; {fix}")
    return path


class CoOpDataset(DatasetBase):
    """A single-label benchmark in CoOp's layout.

    Subclasses set ``dataset_dir`` (folder name under DATASET.ROOT), ``image_subdir``,
    ``split_file`` (``split_zhou_*.json`` or "" when the dataset ships its own split lists),
    ``num_classes_expected`` and, when the split file can be rebuilt from the raw data,
    ``build_split``. ``readonly=True`` (used by tools/check_data.py) writes nothing and refuses to
    rebuild a missing split file.
    """

    image_subdir = ""
    split_file = ""
    split_prefix = "image"  # split paths are relative to: "image" (image_dir) | "dataset" (dataset_dir)
    num_classes_expected = 0
    readme_anchor = ""

    def __init__(self, cfg, readonly: bool = False):
        self.readonly = readonly
        root = dataset_root(cfg)
        self.dataset_dir = require(os.path.join(root, type(self).dataset_dir), "dataset folder",
                                   f"put {type(self).__name__} at $DATA/{type(self).dataset_dir} (see datasets/README.md)")
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir) if self.image_subdir else self.dataset_dir
        self.split_path = os.path.join(self.dataset_dir, self.split_file) if self.split_file else ""
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        train, val, test = self.load_split(cfg)
        train, val = self.few_shot(cfg, train, val)
        train, val, test = self.subsample(cfg, train, val, test)
        super().__init__(train_x=train, val=val or None, test=test, classnames=self.declared_classnames(cfg))

    # ------------------------------------------------------------------ pieces
    @property
    def path_prefix(self) -> str:
        return self.image_dir if self.split_prefix == "image" else self.dataset_dir

    def load_split(self, cfg) -> Tuple[List[Datum], List[Datum], List[Datum]]:
        if os.path.exists(self.split_path):
            return read_split(self.split_path, self.path_prefix)
        if self.readonly:
            raise DatasetLayoutError(f"split file {self.split_path} does not exist; download {self.split_file} "
                                     "(links in datasets/README.md) into " + self.dataset_dir)
        logger.info("%s not found; building the split from the raw data", self.split_path)
        train, val, test = self.build_split(seeded_rng(cfg.SEED))
        try:
            save_split(train, val, test, self.split_path, self.path_prefix)
        except OSError as exc:
            logger.warning("Could not write %s (%s)", self.split_path, exc)
        return train, val, test

    def build_split(self, rng) -> Tuple[List[Datum], List[Datum], List[Datum]]:
        raise DatasetLayoutError(f"split file {self.split_path} does not exist; download {self.split_file} "
                                 "(links in datasets/README.md)")

    def declared_classnames(self, cfg):
        """The class list when it is not read from the labels (multi-label datasets); None otherwise."""
        return None

    def subsample(self, cfg, train, val, test):
        """Base/new classes (DATASET.SUBSAMPLE_CLASSES), relabelled from 0 (CoOp)."""
        return subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)

    def few_shot(self, cfg, train, val):
        k = int(cfg.DATASET.NUM_SHOTS)
        if k < 1:
            return train, val
        if self.readonly:
            return self.generate_fewshot_dataset(train, num_shots=k, rng=seeded_rng(cfg.SEED)), val
        return self.load_or_sample_fewshot(train, val, k, cfg.SEED, self.split_fewshot_dir)

    # ------------------------------------------------------------------ used by tools/check_data.py
    def all_items(self) -> Sequence[Datum]:
        seen, out = set(), []
        for split in (self.train_x, self.val, self.test):
            for d in split or []:
                if d.impath not in seen:
                    seen.add(d.impath)
                    out.append(d)
        return out


def read_lines(path: str) -> List[str]:
    with open(require(path, "file")) as f:
        return [ln.rstrip("\n") for ln in f if ln.strip()]


def needs_scipy(what: str, split_path: str):
    try:
        from scipy.io import loadmat  # noqa: F401
    except ImportError:
        raise DatasetLayoutError(f"split file {split_path} does not exist and building it from {what} needs scipy; "
                                 f"download {os.path.basename(split_path)} (datasets/README.md) or pip install scipy") from None
    return loadmat

