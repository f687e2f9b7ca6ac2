"""Check a $DATA folder before a long sweep: folders, split files, every referenced image (exists and
opens), class counts and any cached few-shot splits. One row per dataset; exit status 1 on any problem.

    python tools/check_data.py --root $DATA                       # every dataset
    python tools/check_data.py --root $DATA --dataset OxfordPets EuroSAT --workers 16
    python tools/check_data.py --root $DATA --dataset ImageNet --quick   # existence only, no opening

Nothing is written: a missing split file is reported, not rebuilt (the loaders would rebuild some).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

from dapt.utils.misc import plural

# the datasets of configs/datasets, in the order of the papers' tables
DEFAULT_DATASETS = [
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101", "FGVCAircraft", "SUN397",
    "DescribableTextures", "EuroSAT", "UCF101", "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR", "VOC12",
]
SHOW = 5  # offending paths listed per problem


class Report:
    def __init__(self, name: str):
        self.name = name
        self.problems: List[Tuple[str, List[str], str]] = []  # (what, paths, fix)
        self.summary = ""

    def problem(self, what: str, paths: Sequence[str] = (), fix: str = "") -> None:
        self.problems.append((what, list(paths), fix))

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> List[str]:
        head = f"{self.name:<20} {'OK' if self.ok else 'PROBLEM':<8} {self.summary}"
        out = [head.rstrip()]
        for what, paths, fix in self.problems:
            out.append(f"    - {what}")
            for p in paths[:SHOW]:
                out.append(f"        {p}")
            if len(paths) > SHOW:
                out.append(f"        ... and {len(paths) - SHOW:,} more")
            if fix:
                out.append(f"      fix: {fix}")
        return out


def check_image(path: str, decode: bool) -> Optional[str]:
    """None if the image opens; else the reason."""
    from PIL import Image

    if not os.path.isfile(path):
        return "missing"
    try:
        with Image.open(path) as im:
            if decode:
                im.load()
            else:
                im.verify()
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
        return f"unreadable ({type(exc).__name__}: {exc})"
    return None


def check_images(paths: Sequence[str], workers: int, quick: bool, decode: bool):
    if quick:
        missing = [p for p in paths if not os.path.isfile(p)]
        return missing, []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda p: check_image(p, decode), paths, chunksize=256))
    missing = [p for p, r in zip(paths, results) if r == "missing"]
    bad = [f"{p}: {r}" for p, r in zip(paths, results) if r and r != "missing"]
    return missing, bad


def readme_fix(cls) -> str:
    anchor = getattr(cls, "readme_anchor", "")
    return f"see datasets/README.md#{anchor}" if anchor else "see datasets/README.md"


def check_fewshot_caches(ds, report: Report) -> None:
    from dapt.data.base import load_pickle, rebase_paths

    fs_dir = getattr(ds, "split_fewshot_dir", "")
    for path in sorted(glob.glob(os.path.join(fs_dir, "shot_*-seed_*.pkl"))) if fs_dir else []:
        try:
            data = load_pickle(path)
            items = [d for key in ("train", "val") for d in rebase_paths(data.get(key) or [], ds.dataset_dir, path)]
        except Exception as exc:  # noqa: BLE001
            report.problem(f"few-shot cache {path} cannot be read ({exc})", fix=f"delete {path}; it is regenerated")
            continue
        missing = [d.impath for d in items if not os.path.isfile(d.impath)]
        if missing:
            report.problem(f"few-shot cache {path} names {len(missing):,} missing images", missing,
                           f"delete {path} (it is regenerated) or restore the images")


def check_classes(ds, cls, report: Report) -> None:
    expected = getattr(cls, "num_classes_expected", 0)
    if expected and ds.num_classes != expected:
        report.problem(f"{plural(ds.num_classes, 'class', 'classes')}, expected {expected}",
                       fix=f"the dataset looks incomplete or mixed with another one; {readme_fix(cls)}")
    if getattr(ds, "multi_label", False):
        import numpy as np

        for split in ("train_x", "test"):
            data = getattr(ds, split) or []
            if data:
                present = np.array([d.label for d in data]).sum(0)
                empty = [ds.classnames[i] for i, n in enumerate(present) if n == 0]
                if empty:
                    report.problem(f"{split}: no image of class(es) {', '.join(empty)}", fix=readme_fix(cls))
        return
    train_labels = {d.label for d in ds.train_x or []}
    gaps = sorted(set(range(ds.num_classes)) - train_labels)
    if gaps and ds.train_x:
        report.problem(f"train: no image of class(es) {', '.join(ds.lab2cname.get(g, str(g)) for g in gaps[:SHOW])}",
                       fix=readme_fix(cls))
    for split in ("val", "test"):
        data = getattr(ds, split) or []
        extra = sorted({d.label for d in data} - train_labels)
        if extra and ds.train_x is not data:
            report.problem(f"{split}: labels {extra[:SHOW]} do not occur in train", fix=readme_fix(cls))


def check_dataset(name: str, root: str, workers: int, quick: bool, decode: bool) -> Report:
    from dapt.config import get_cfg_default
    from dapt.data.registry import DATASET_REGISTRY, import_dataset_modules

    import_dataset_modules()
    report = Report(name)
    try:
        cls = DATASET_REGISTRY.get(name)
    except KeyError as exc:
        report.problem(str(exc.args[0]), fix="use a registered dataset name (see configs/datasets/*.yaml)")
        return report
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = -1
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    try:
        try:
            ds = cls(cfg, readonly=True)
        except TypeError:
            ds = cls(cfg)
    except Exception as exc:  # noqa: BLE001 - the loader's message names the file and the fix
        report.problem(str(exc).split("\n")[0], fix=readme_fix(cls))
        return report
    if hasattr(ds, "all_items"):
        items = ds.all_items()
    else:
        seen = {}
        for split in (ds.train_x, ds.val, ds.test):
            for d in split or []:
                seen.setdefault(d.impath, d)
        items = list(seen.values())
    sizes = []
    for label, data in (("train", ds.train_x), ("val", ds.val), ("test", ds.test)):
        if data is not None and not (label == "train" and data is ds.test):
            sizes.append(f"{label} {len(data):,}")
    report.summary = f"{plural(ds.num_classes, 'class', 'classes')}, " + " / ".join(sizes)
    if not items:
        report.problem("no images listed", fix=readme_fix(cls))
        return report
    missing, bad = check_images([d.impath for d in items], workers, quick, decode)
    if missing:
        report.problem(f"{len(missing):,} of {len(items):,} images missing", missing,
                       f"re-extract the images into {getattr(ds, 'image_dir', ds.dataset_dir)}; {readme_fix(cls)}")
    if bad:
        report.problem(f"{len(bad):,} images cannot be opened", bad, "re-download or re-extract those files")
    check_classes(ds, cls, report)
    check_fewshot_caches(ds, report)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="the $DATA folder that holds the dataset folders")
    p.add_argument("--dataset", nargs="+", default=None, help="registered names (default: all benchmarks)")
    p.add_argument("--workers", type=int, default=8, help="threads that open images")
    p.add_argument("--quick", action="store_true", help="only check that the images exist")
    p.add_argument("--decode", action="store_true", help="fully decode every image (slow; catches truncation)")
    args = p.parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    if not os.path.isdir(root):
        print(f"--root {root} is not a folder; pass the $DATA folder that holds the dataset folders")
        return 2
    import logging

    logging.getLogger("dapt").setLevel(logging.WARNING)
    names = args.dataset or DEFAULT_DATASETS
    failed = 0
    for name in names:
        report = check_dataset(name, root, args.workers, args.quick, args.decode)
        print("\n".join(report.lines()), flush=True)
        failed += not report.ok
    print(f"\n{len(names) - failed} of {plural(len(names), 'dataset')} OK" + ("" if not failed else "; fix the problems above"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
