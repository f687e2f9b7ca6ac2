"""The ``train.py`` command line, with MaPLe/Dassl's flags (and no prefix matching)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from dapt.config import ConfigError, get_cfg_default, merge_from_file, merge_from_list
from dapt.launch import run, save_config  # noqa: F401  (run and save_config live in dapt.launch)

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


if __name__ == "__main__":
    sys.exit(main())
