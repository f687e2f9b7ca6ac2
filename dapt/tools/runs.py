"""The one reader of run folders: used by tools/parse_results.py, tools/sweep.py and tools/tables.py.

A run folder is a folder holding a ``log.txt`` (later starts in the same folder write
``log.txt-<time>``; all of them are read, oldest first). What a run is comes from two places:

- its saved ``config.yaml`` (trainer, DAPT on/off and mask source, dataset, shots, seed, base/new
  subsample), and
- its place in the output tree, when it follows upstream's layout (the one ``scripts/`` and
  ``tools/sweep.py`` write); this gives the setting, the method label and the config-file name::

    few_shot/<dataset>/<method>/<cfg>/<N>shots/seed<S>
    base2new/train_base/<dataset>/shots_<N>/<method>/<cfg>/seed<S>      (tested on the base classes)
    base2new/test_new/<dataset>/shots_<N>/<method>/<cfg>/seed<S>        (tested on the novel classes)
    xd/train/<source dataset>/<method>/<cfg>/seed<S>
    xd/test/<target dataset>/<method>/<cfg>/seed<S>
    data_efficient/<dataset>/<method>/<cfg>/ratio<R>/seed<S>

A run of a DAPT method may also hold ``mask_quality.json`` (per epoch: the IoU of its training
masks against the ground truth, list of {epoch, iou, fg_fraction, gt_fg_fraction, source}); the
last epoch's IoU is ``Run.extra["mask_iou"]`` (a fraction, 0-1).

The result of a run is its final test: the last block of ``* key: value%`` lines that follows an
``Evaluate on the *test* set`` line (validation blocks of ``TEST.FINAL_MODEL best_val`` runs are
not results). Logs without ``Evaluate on`` lines (other code bases) count their last block.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from dapt.config import flatten

logger = logging.getLogger(__name__)

SETTINGS = ("few_shot", "base2new", "xd", "data_efficient")
# keys that differ between the seeds of one experiment without making it another experiment
PER_RUN_KEYS = ("SEED", "OUTPUT_DIR", "RESUME", "DATASET.ROOT")

_RESULT = re.compile(r"^\* ([A-Za-z_][\w ]*?): ([-\d.]+)%\s*$")
_EVAL = re.compile(r"Evaluate on the \*(\w+)\* set")
_SEED = re.compile(r"^seed(\d+)$")
_SHOTS_FS = re.compile(r"^(-?\d+)shots$")
_SHOTS_B2N = re.compile(r"^shots_(-?\d+)$")
_RATIO = re.compile(r"^ratio([\d.]+)$")


@dataclass
class Run:
    """One run folder, as read from disk."""

    path: Path
    logs: List[Path]
    config: Optional[dict]  # the parsed config.yaml, None when absent or unreadable
    results: Dict[str, float]  # the final test's "* key: value%" lines; empty when unfinished
    setting: str = ""  # few_shot | base2new | xd | data_efficient | "" (not in the layout)
    split: str = ""  # base2new: base | new; xd: train | test; else ""
    dataset: str = ""  # folder label (a dataset variant such as scenes_p0.5) or DATASET.NAME
    method: str = ""  # folder label, or <trainer>[+DAPT-G|+DAPT-S] from the config
    cfg_name: str = ""  # config-file name from the layout, or "cfg-<hash>" of the config
    shots: Optional[int] = None
    seed: Optional[int] = None
    ratio: Optional[float] = None
    subsample: str = ""  # DATASET.SUBSAMPLE_CLASSES of the config
    extra: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return bool(self.results)

    @property
    def metric(self) -> Optional[float]:
        """The main number: accuracy, or mAP for multi-label data."""
        for k in ("accuracy", "mAP"):
            if k in self.results:
                return self.results[k]
        return None

    def experiment_key(self) -> str:
        """Fingerprint of the config without the keys that differ between seeds of one experiment."""
        if self.config is None:
            return "no-config"
        flat = flatten(self.config)
        for k in PER_RUN_KEYS:
            flat.pop(k, None)
        return hashlib.sha1(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:8]


def log_files(folder: Path) -> List[Path]:
    """``log.txt`` first, then ``log.txt-<time>`` in time order (the names sort by time)."""
    logs = [p for p in folder.glob("log.txt*") if p.is_file()]
    return sorted(logs, key=lambda p: (p.name != "log.txt", p.name))


def parse_log_text(text: str) -> Tuple[Dict[str, float], Dict[str, float]]:
    """-> (final test results, last result block of any split)."""
    final: Dict[str, float] = {}
    any_last: Dict[str, float] = {}
    split = None
    block: Dict[str, float] = {}
    saw_eval = False
    in_block = False

    def close():
        nonlocal block, final, any_last
        if block:
            any_last = block
            if split == "test" or not saw_eval:
                final = block
        block = {}

    for raw in text.splitlines():
        line = raw.strip()
        m = _EVAL.search(line)
        if m:
            close()
            in_block = False
            split, saw_eval = m.group(1), True
            continue
        if line.startswith("=> result"):
            close()
            in_block = True
            continue
        r = _RESULT.match(line)
        if r and (in_block or not saw_eval):
            block[r.group(1)] = float(r.group(2))
            continue
        if line.startswith("* "):
            continue  # "* total: 100", "* class: ..." lines of the same block
        if block:
            close()
            in_block = False
    close()
    return final, any_last


def read_results(logs: List[Path]) -> Dict[str, float]:
    """The final test results over a run's logs (the newest log with one wins)."""
    results: Dict[str, float] = {}
    for log in logs:
        final, _ = parse_log_text(log.read_text(errors="replace"))
        if final:
            results = final
    return results


_ELAPSED = re.compile(r"^Elapsed: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)")


def read_timing(logs: List[Path]) -> Optional[float]:
    """Seconds of the last training (the "Elapsed:" line after "Finish training"), or None."""
    seconds = None
    for log in logs:
        trained = False
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("Finish training"):
                trained = True
            m = _ELAPSED.match(line.strip())
            if m and trained:
                d, h, mi, se = (int(x) if x else 0 for x in m.groups())
                seconds = ((d * 24 + h) * 60 + mi) * 60 + se
    return seconds


def read_config(folder: Path) -> Optional[dict]:
    path = folder / "config.yaml"
    if not path.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        logger.warning("%s: unreadable YAML (%s); the run is read without its config", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _layout(rel: Tuple[str, ...]) -> dict:
    """Identity from the folder layout (relative parts ending at the run folder), or {}."""
    for i in range(len(rel)):
        parts = rel[i:]
        head = parts[0]
        if head not in SETTINGS:
            continue
        try:
            if head == "few_shot" and len(parts) == 6:
                _, ds, method, cfg, shots, seed = parts
                return dict(setting=head, dataset=ds, method=method, cfg_name=cfg,
                            shots=int(_SHOTS_FS.match(shots).group(1)), seed=int(_SEED.match(seed).group(1)))
            if head == "base2new" and len(parts) == 7 and parts[1] in ("train_base", "test_new"):
                _, phase, ds, shots, method, cfg, seed = parts
                return dict(setting=head, split="base" if phase == "train_base" else "new", dataset=ds,
                            method=method, cfg_name=cfg, shots=int(_SHOTS_B2N.match(shots).group(1)),
                            seed=int(_SEED.match(seed).group(1)))
            if head == "xd" and len(parts) == 6 and parts[1] in ("train", "test"):
                _, phase, ds, method, cfg, seed = parts
                return dict(setting=head, split=phase, dataset=ds, method=method, cfg_name=cfg,
                            seed=int(_SEED.match(seed).group(1)))
            if head == "data_efficient" and len(parts) == 6:
                _, ds, method, cfg, ratio, seed = parts
                return dict(setting=head, dataset=ds, method=method, cfg_name=cfg,
                            ratio=float(_RATIO.match(ratio).group(1)), seed=int(_SEED.match(seed).group(1)))
        except (AttributeError, ValueError):
            continue
    return {}


def method_from_config(cfg: dict) -> str:
    trainer = cfg.get("TRAINER", {}).get("NAME", "") or "?"
    dapt = cfg.get("DAPT", {})
    if dapt.get("ENABLED"):
        source = dapt.get("MASK", {}).get("SOURCE", "")
        return f"{trainer}+DAPT-G" if source == "gradcam" else f"{trainer}+DAPT-S"
    return trainer


def read_mask_iou(folder: Path) -> Optional[float]:
    """The last epoch's mask IoU in ``<folder>/mask_quality.json``, or None (no file, or no IoU in it)."""
    path = Path(folder) / "mask_quality.json"
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        logger.warning("%s: unreadable (%s); the run is read without its mask quality", path, exc)
        return None
    rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("iou"), (int, float))] \
        if isinstance(rows, list) else []
    if not rows:
        return None
    last = max(range(len(rows)), key=lambda i: (float(rows[i].get("epoch") or 0), i))  # a tie: the later line
    return float(rows[last]["iou"])


def read_run(folder: Path) -> Run:
    folder = Path(folder)
    logs = log_files(folder)
    cfg = read_config(folder)
    run = Run(path=folder, logs=logs, config=cfg, results=read_results(logs))
    if cfg is not None:
        ds = cfg.get("DATASET", {})
        run.dataset = str(ds.get("NAME", ""))
        run.shots = ds.get("NUM_SHOTS")
        run.subsample = str(ds.get("SUBSAMPLE_CLASSES", ""))
        run.seed = cfg.get("SEED")
        run.method = method_from_config(cfg)
        run.cfg_name = "cfg-" + run.experiment_key()
    else:
        run.method, run.cfg_name = "unknown", "no-config"
    for k, v in _layout(folder.resolve().parts).items():
        setattr(run, k, v)
    elapsed = read_timing(logs)
    if elapsed is not None:
        run.extra["elapsed_s"] = elapsed
        epochs = (cfg or {}).get("OPTIM", {}).get("MAX_EPOCH")
        if epochs:
            run.extra["train_min_per_epoch"] = elapsed / 60.0 / float(epochs)
    iou = read_mask_iou(folder)
    if iou is not None:
        run.extra["mask_iou"] = iou
    return run


def find_runs(root: Path) -> List[Run]:
    """Every run folder under ``root`` (``root`` itself included), sorted by path."""
    root = Path(root)
    folders = sorted({p.parent for p in root.rglob("log.txt*") if p.is_file()})
    return [read_run(f) for f in folders]
