"""Train or evaluate a config: what ``train.py``, ``tools/`` and ``dapt.experiments`` call.

    import dapt
    cfg = dapt.get_cfg_default(); ...; cfg.freeze()
    trainer = dapt.train(cfg)            # builds the trainer named by TRAINER.NAME and trains it
    trainer = dapt.evaluate(cfg, model_dir="output/...")   # or evaluates saved prompts
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional

from dapt.config import ConfigError, flatten, get_cfg_default, yaml_error

logger = logging.getLogger("dapt.cli")


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

    old = flatten(_load_yaml(saved_path))
    new = flatten(yaml.safe_load(cfg.dump()))
    default = flatten(yaml.safe_load(get_cfg_default().dump()))
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


def non_default_keys(cfg) -> List[str]:
    """The keys whose value in ``cfg`` differs from the defaults, as "KEY: value" (the start-up block;
    the full config goes to config.yaml)."""
    import yaml

    new = flatten(yaml.safe_load(cfg.dump()))
    default = flatten(yaml.safe_load(get_cfg_default().dump()))
    return [f"{k}: {v!r}" for k, v in new.items() if k not in default or default[k] != v]


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cap_num_workers(cfg) -> None:
    """DATALOADER.NUM_WORKERS above the CPUs this process may use is lowered to that count, with one
    log line (safe: the key is ignored by the output-folder config compare and moves no result)."""
    cpus = available_cpus()
    if cfg.DATALOADER.NUM_WORKERS > cpus:
        logger.info("DATALOADER.NUM_WORKERS %d > %d available CPUs: using %d", cfg.DATALOADER.NUM_WORKERS, cpus, cpus)
        frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = cpus
        if frozen:
            cfg.freeze()


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
        logger.warning("--fresh: moved the previous contents of %s to %s", out, moved)
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
    from dapt.config.compat import warn_ignored_keys
    from dapt.engine import dist as distributed
    from dapt.engine.build import build_trainer
    from dapt.utils.logging import setup_logger
    from dapt.utils.misc import plural, set_random_seed

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
        warn_ignored_keys(cfg)
        if cfg.SEED >= 0:
            logger.info("Setting fixed seed: %d", cfg.SEED)
            set_random_seed(cfg.SEED)
        cap_num_workers(cfg)
        changed = non_default_keys(cfg)
        if main_process:
            logger.info("Config saved to %s; %s differ from the defaults%s", save_config(cfg, cfg.OUTPUT_DIR),
                        plural(len(changed), "key"), ":\n  " + "\n  ".join(changed) if changed else "")
        else:
            logger.debug("%s differ from the defaults", plural(len(changed), "key"))
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


def train(cfg, console: bool = True, fresh: bool = False):
    """Train the trainer named by ``cfg.TRAINER.NAME`` (logs, config and checkpoints under
    ``cfg.OUTPUT_DIR``); returns the trainer (``trainer.last_results`` holds the final test).
    ``fresh``: move a previous run in OUTPUT_DIR aside instead of resuming it."""
    return run(cfg, console=console, fresh=fresh)


def evaluate(cfg, model_dir: str = "", load_epoch: Optional[int] = None, console: bool = True):
    """Evaluate on the test split: the prompts saved under ``model_dir`` (epoch ``load_epoch``, default the
    last), or the freshly built model (zero-shot CLIP) without ``model_dir``; returns the trainer."""
    return run(cfg, eval_only=True, model_dir=model_dir, load_epoch=load_epoch, console=console)
