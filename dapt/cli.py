"""The ``train.py`` command line, with MaPLe/Dassl's flags (and no prefix matching)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from dapt.config import ConfigError, get_cfg_default, merge_from_file, merge_from_list, yaml_error

logger = logging.getLogger("dapt.cli")


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: the official DAPT script's "--mode" was silently taken as "--model-dir".
    p = argparse.ArgumentParser(description="dapt: prompt tuning of CLIP models", allow_abbrev=False)
    p.add_argument("--root", type=str, default="", help="path to the dataset folder ($DATA)")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory to resume from")
    p.add_argument("--seed", type=int, default=-1, help="only positive values enable a fixed seed")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to the trainer config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="path to the dataset config file")
    p.add_argument("--trainer", type=str, default="", help="name of the trainer")
    p.add_argument("--backbone", type=str, default="", help="name of the CNN/ViT backbone")
    p.add_argument("--head", type=str, default="", help="name of the head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("--fresh", action="store_true",
                   help="start again: a non-empty output folder is first renamed to <output-dir>.old-<time>")
    # the official DAPT CLI: dapt-g = Grad-CAM masks, dapt-s = precomputed (SEEM) masks; both enable DAPT
    p.add_argument("--mode", "--dapt-mode", dest="dapt_mode", choices=("dapt-g", "dapt-s"), default="",
                   help="enable DAPT: dapt-g (per-epoch Grad-CAM masks) or dapt-s (precomputed masks)")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command line")
    return p


def reset_cfg(cfg, args) -> None:
    """Apply the flags to the config, as Dassl's train.py does."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head
    if getattr(args, "dapt_mode", ""):
        cfg.DAPT.ENABLED = True
        cfg.DAPT.MASK.SOURCE = "gradcam" if args.dapt_mode == "dapt-g" else "precomputed"


def setup_cfg(args):
    """defaults <- dataset config <- trainer config <- flags <- KEY VALUE overrides."""
    cfg = get_cfg_default()
    if args.dataset_config_file:
        merge_from_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_from_file(cfg, args.config_file)
    reset_cfg(cfg, args)
    merge_from_list(cfg, args.opts or [])
    cfg.freeze()
    return cfg


def save_config(cfg, output_dir: str) -> str:
    """Write the merged config to ``output_dir/config.yaml`` (kept if it already exists and differs)."""
    import time

    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "config.yaml")
    text = cfg.dump()
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return path
        path = os.path.join(output_dir, "config.yaml-" + time.strftime("%Y-%m-%d-%H-%M-%S"))
    from dapt.engine.checkpoint import atomic_write_text

    atomic_write_text(path, text)
    return path


# keys that cannot change a run's result: a folder written with other values still resumes
IGNORED_KEYS = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT", "DATALOADER.NUM_WORKERS", "VERBOSE", "TRAIN.PRINT_FREQ")
LOCK_NAME = ".lock"


class OutputFolderError(ValueError):
    """The output folder holds another run, or is in use (one line for the user)."""


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _load_yaml(path: str) -> dict:
    import yaml

    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None


def config_differences(saved_path: str, cfg) -> List[str]:
    """Keys whose value in ``cfg`` differs from the config saved at ``saved_path``, as "KEY: old -> new".

    Ignored: IGNORED_KEYS, and keys the saved file lacks (added since) that hold their default."""
    import yaml

    old = _flatten(_load_yaml(saved_path))
    new = _flatten(yaml.safe_load(cfg.dump()))
    default = _flatten(yaml.safe_load(get_cfg_default().dump()))
    diffs = []
    for key in list(new) + [k for k in old if k not in new]:
        if key in IGNORED_KEYS:
            continue
        if key not in old:
            if key in default and new[key] == default[key]:
                continue
            diffs.append(f"{key}: (absent) -> {new[key]!r}")
        elif key not in new:
            diffs.append(f"{key}: {old[key]!r} -> (no longer a key)")
        elif old[key] != new[key]:
            diffs.append(f"{key}: {old[key]!r} -> {new[key]!r}")
    return diffs


def check_same_config(folder: str, cfg, what: str = "") -> None:
    """Refuse to continue a run in ``folder`` whose saved config.yaml differs from ``cfg``."""
    path = os.path.join(folder, "config.yaml")
    if not os.path.isfile(path):
        return
    diffs = config_differences(path, cfg)
    if diffs:
        more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        hint = ("choose another --resume folder" if what == "--resume" else
                "choose another --output-dir, or add --fresh to move the old run aside and start again")
        raise OutputFolderError(f"{folder} holds a run with another config ({'; '.join(diffs[:3])}{more}); {hint}")


def lock_folder(folder: str):
    """Take ``folder/.lock`` (fcntl.flock, released by the OS when the process dies); return its file
    descriptor, or raise OutputFolderError when another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    path = os.path.join(folder, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        finally:
            os.close(fd)
        who = f" (process {holder})" if holder else ""
        raise OutputFolderError(f"{folder} is in use by another run{who}; wait for it to end or choose "
                                "another --output-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock_folder(fd) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def _has_contents(folder: str) -> bool:
    return os.path.isdir(folder) and any(name != LOCK_NAME for name in os.listdir(folder))


def _mkdirs(folder: str) -> Optional[str]:
    """Create ``folder``; return the topmost folder this call created (None if it existed)."""
    folder = os.path.abspath(folder)
    top, d = None, folder
    while not os.path.isdir(d):
        top, d = d, os.path.dirname(d)
    os.makedirs(folder, exist_ok=True)
    return top


def _remove_created(out: str, created: str) -> None:
    """Undo ``_mkdirs``: delete OUTPUT_DIR (this run created it and holds its lock, so all in it is this
    run's), then each parent up to ``created`` only while empty: a parallel run may share a parent."""
    import shutil

    out = os.path.abspath(out)
    shutil.rmtree(out, ignore_errors=True)
    d = os.path.dirname(out)
    top = os.path.abspath(created)
    while out != top and (d == top or d.startswith(top + os.sep)):
        try:
            os.rmdir(d)
        except OSError:
            break
        if d == top:
            break
        d = os.path.dirname(d)


def _drop_log_files(folder: str) -> None:
    """Close the dapt log handlers writing under ``folder`` (before that folder is removed)."""
    root = logging.getLogger("dapt")
    for h in list(root.handlers):
        name = getattr(h, "baseFilename", "")
        if name and os.path.abspath(name).startswith(os.path.abspath(folder) + os.sep):
            root.removeHandler(h)
            h.close()


def check_run_args(cfg, eval_only: bool, model_dir: str, fresh: bool) -> None:
    """Checks that need no file written: refuse contradictory or empty flags with one line."""
    if model_dir and not eval_only:
        raise ConfigError(f"--model-dir {model_dir} is only read with --eval-only; add --eval-only to evaluate "
                          "those weights (to continue a training run use --resume DIR)")
    if cfg.OPTIM.MAX_EPOCH < 1:
        raise ConfigError(f"OPTIM.MAX_EPOCH must be >= 1 (got {cfg.OPTIM.MAX_EPOCH})")
    if cfg.RESUME:
        if fresh:
            raise ConfigError("--fresh starts again and --resume continues a run: pass only one of them")
        if not os.path.isdir(cfg.RESUME):
            raise FileNotFoundError(f"--resume folder {cfg.RESUME} does not exist; check the path")
    if model_dir and not os.path.isdir(model_dir):
        raise FileNotFoundError(f"--model-dir {model_dir} does not exist; check the path")


def prepare_output_dir(cfg, fresh: bool = False):
    """Create and lock OUTPUT_DIR, clean a killed run's temporary files, refuse a folder holding a run
    with another config (``fresh``: rename it to ``<dir>.old-<time>`` first).
    Returns (lock descriptor, topmost folder created by this call or None)."""
    import time

    from dapt.engine.checkpoint import remove_stale_temp_files

    out = cfg.OUTPUT_DIR
    if fresh and _has_contents(out):
        fd = lock_folder(out)  # refuse to move a folder another run is writing to
        moved = f"{out.rstrip(os.sep)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            os.rename(out, moved)
        finally:
            unlock_folder(fd)
        print(f"--fresh: moved the previous contents of {out} to {moved}", file=sys.stderr)
    created = _mkdirs(out)
    fd = lock_folder(out)
    try:
        remove_stale_temp_files(out)
        check_same_config(out, cfg)
        if cfg.RESUME and os.path.abspath(cfg.RESUME) != os.path.abspath(out):
            check_same_config(cfg.RESUME, cfg, what="--resume")
    except BaseException:
        unlock_folder(fd)
        if created:
            _remove_created(out, created)
        raise
    return fd, created


def run(cfg, eval_only: bool = False, model_dir: str = "", load_epoch: Optional[int] = None, no_train: bool = False,
        console: bool = True, fresh: bool = False):
    """Build the trainer for ``cfg`` and train / evaluate it; returns the trainer.

    The output folder is locked while the run lasts; a folder holding a run with another config is
    refused (``fresh``: moved aside first). When the run fails before training starts, a folder it
    created is removed again. ``console=False`` keeps the log out of the terminal (it still goes to
    log.txt)."""
    from dapt.engine.build import build_trainer
    from dapt.utils.logging import setup_logger
    from dapt.utils.misc import set_random_seed

    from dapt.engine import dist as distributed

    check_run_args(cfg, eval_only, model_dir, fresh)
    distributed.init_distributed(cfg.USE_CUDA)
    main_process = distributed.is_main_process()
    lock, created, started = None, None, False
    if main_process:
        lock, created = prepare_output_dir(cfg, fresh)
    try:
        # only rank 0 writes log.txt and the config; the other processes log warnings to the console
        setup_logger(cfg.OUTPUT_DIR if main_process else None, level=logging.INFO if main_process else logging.WARNING,
                     console=console)
        if cfg.SEED >= 0:
            logger.info("Setting fixed seed: %d", cfg.SEED)
            set_random_seed(cfg.SEED)
        if cfg.VERBOSE:
            logger.info("** Config **\n%s", cfg)
        if main_process:
            logger.info("Config saved to %s", save_config(cfg, cfg.OUTPUT_DIR))
        trainer = build_trainer(cfg)
        if eval_only:
            if model_dir:
                trainer.load_model(model_dir, epoch=load_epoch)
            elif list(trainer.trainable_parameters()):
                raise ValueError(f"--eval-only without --model-dir would evaluate the untrained prompts of "
                                 f"{cfg.TRAINER.NAME}; pass --model-dir <output folder of a training run>")
            started = True
            trainer.test()
            return trainer
        if not no_train:
            trainer.check_training_data()
            if cfg.RESUME:  # refuse before training starts, so a folder this run created is not left behind
                from pathlib import Path

                from dapt.engine.checkpoint import latest_checkpoint

                if latest_checkpoint(Path(cfg.RESUME) / trainer.checkpoint_name) is None:
                    raise FileNotFoundError(f"--resume {cfg.RESUME}: no checkpoint model.pth.tar-N in "
                                            f"{Path(cfg.RESUME) / trainer.checkpoint_name}; check the folder")
            started = True
            trainer.train()
        return trainer
    except BaseException:
        if created and not started:  # nothing of value was written: leave no folder behind
            _drop_log_files(cfg.OUTPUT_DIR)
            unlock_folder(lock)
            lock = None
            _remove_created(cfg.OUTPUT_DIR, created)
        raise
    finally:
        unlock_folder(lock)


def _one_line(exc: BaseException) -> str:
    """The user-facing line for an error: its message, and the path for an OSError."""
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        if exc.filename2 is not None:
            where = f"{where} -> {exc.filename2}"
        reason = exc.strerror or str(exc)
        return f"{where}: {reason}; check that the location exists and is writable" if where else reason
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(msg).split()) or type(exc).__name__


def main(argv: Optional[List[str]] = None) -> int:
    from dapt.engine.checkpoint import CheckpointError
    from dapt.engine.trainer import TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        cfg = setup_cfg(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run(cfg, eval_only=args.eval_only, model_dir=args.model_dir, load_epoch=args.load_epoch, no_train=args.no_train,
            fresh=args.fresh)
    except KeyboardInterrupt:
        print(f"interrupted: nothing half-written was kept; rerun the same command to resume from the last "
              f"checkpoint in {cfg.OUTPUT_DIR}", file=sys.stderr)
        return 130
    except (FileNotFoundError, KeyError, ValueError, OSError, CheckpointError, TrainingDiverged) as exc:
        # user-facing problems (missing files, bad names, bad values, I/O, divergence) get one line;
        # DAPT_DEBUG=1 shows the traceback
        if os.environ.get("DAPT_DEBUG"):
            raise
        print(f"error: {_one_line(exc)} (set DAPT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    return 0
