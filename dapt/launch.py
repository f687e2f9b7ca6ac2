"""Train or evaluate a config: what ``train.py``, ``tools/`` and ``dapt.experiments`` call.

    import dapt
    cfg = dapt.get_cfg_default(); ...; cfg.freeze()
    trainer = dapt.train(cfg)            # builds the trainer named by TRAINER.NAME and trains it
    trainer = dapt.evaluate(cfg, model_dir="output/...")   # or evaluates saved prompts
"""
from __future__ import annotations

import logging
import os
from typing import Optional

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


def run(cfg, eval_only: bool = False, model_dir: str = "", load_epoch: Optional[int] = None, no_train: bool = False,
        console: bool = True):
    """Build the trainer for ``cfg`` and train / evaluate it; returns the trainer.

    ``console=False`` keeps the log out of the terminal (it still goes to log.txt)."""
    from dapt.engine import dist as distributed
    from dapt.config.compat import warn_ignored_keys
    from dapt.engine.build import build_trainer
    from dapt.utils.logging import setup_logger
    from dapt.utils.misc import set_random_seed

    distributed.init_distributed(cfg.USE_CUDA)
    main_process = distributed.is_main_process()
    # only rank 0 writes log.txt and the config; the other processes log warnings to the console
    setup_logger(cfg.OUTPUT_DIR if main_process else None, level=logging.INFO if main_process else logging.WARNING,
                 console=console)
    warn_ignored_keys(cfg)
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
        trainer.test()
        return trainer
    if not no_train:
        trainer.train()
    return trainer


def train(cfg, console: bool = True):
    """Train the trainer named by ``cfg.TRAINER.NAME`` (logs, config and checkpoints under
    ``cfg.OUTPUT_DIR``); returns the trainer (``trainer.last_results`` holds the final test)."""
    return run(cfg, console=console)


def evaluate(cfg, model_dir: str = "", load_epoch: Optional[int] = None, console: bool = True):
    """Evaluate on the test split: the prompts saved under ``model_dir`` (epoch ``load_epoch``, default the
    last), or the freshly built model (zero-shot CLIP) without ``model_dir``; returns the trainer."""
    return run(cfg, eval_only=True, model_dir=model_dir, load_epoch=load_epoch, console=console)
