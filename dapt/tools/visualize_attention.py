"""Grad-CAM sheets of test images for one or two checkpoints side by side (correct / wrong
predictions marked), and DAPT-G vs DAPT-S mask sheets of training images, as PNG files.

    # MaPLe vs MaPLe+DAPT-S on the images MaPLe gets wrong
    python tools/visualize_attention.py attention --root $DATA --trainer MaPLe \
        --dataset-config-file configs/datasets/stanford_cars.yaml \
        --config-file configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml \
        --checkpoint MaPLe=output/.../MaPLe/seed1 --checkpoint DAPT-S=output/.../MaPLe_dapt-s/seed1 \
        --select wrong --num 16 --out figures/cars DATASET.NUM_SHOTS 16

    # DAPT-G (Grad-CAM of the given prompts) vs DAPT-S (the mask store) on training images
    python tools/visualize_attention.py masks --root $DATA --trainer MaPLe --dataset-config-file ... \
        --config-file ... [--model-dir output/...] --num 16 --out figures/masks DAPT.MASK.STORE seem

A checkpoint is LABEL=MODEL_DIR[@EPOCH] (a train.py output folder; LABEL=init: the prompts as built).
"""
from __future__ import annotations

import argparse
import sys


def parse_checkpoint(text: str):
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise argparse.ArgumentTypeError(f"--checkpoint '{text}' must be LABEL=MODEL_DIR[@EPOCH] (or LABEL=init)")
    model_dir, at, epoch = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if at and not epoch.isdigit():
        raise argparse.ArgumentTypeError(f"--checkpoint '{text}': the epoch after @ must be a number")
    if model_dir == "init":
        model_dir = ""
    return label, model_dir, int(epoch) if at else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, helptext in (("attention", "Grad-CAM overlays of test images, one column per checkpoint"),
                           ("masks", "DAPT-G vs DAPT-S masks of training images")):
        s = sub.add_parser(name, help=helptext, allow_abbrev=False)
        s.add_argument("--root", default="", help="dataset root ($DATA)")
        s.add_argument("--trainer", required=True, help="method, e.g. MaPLe")
        s.add_argument("--config-file", default="")
        s.add_argument("--dataset-config-file", default="")
        s.add_argument("--out", default="attention_sheets", help="folder for the PNG sheets")
        s.add_argument("--num", type=int, default=16, help="images drawn")
        s.add_argument("--per-sheet", type=int, default=8, help="rows per PNG")
        if name == "attention":
            s.add_argument("--checkpoint", type=parse_checkpoint, action="append", required=True,
                           help="LABEL=MODEL_DIR[@EPOCH]; give it once or twice")
            s.add_argument("--select", default="all", choices=["all", "wrong", "correct", "disagree"],
                           help="images the first checkpoint gets wrong / right, or where the two disagree")
            s.add_argument("--target", default="label", choices=["label", "pred"],
                           help="Grad-CAM of the true class or of each checkpoint's prediction")
            s.add_argument("--split", default="test", choices=["test", "val", "train_x"])
        else:
            s.add_argument("--model-dir", default="", help="prompts for the DAPT-G Grad-CAM (default: as built)")
            s.add_argument("--load-epoch", type=int, default=None)
        s.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    return p


def main(argv=None):
    """Returns (exit code, what the library returned) so that tests can check the drawn maps."""
    import tempfile

    from dapt.cli import build_parser as train_parser
    from dapt.cli import setup_cfg
    from dapt.config import ConfigError
    from dapt.decouple.attention_sheets import render_attention, render_masks
    from dapt.engine.build import build_trainer
    from dapt.utils.logging import setup_logger

    args = build_parser().parse_args(argv)
    targv = ["--trainer", args.trainer, "--output-dir", tempfile.mkdtemp(prefix="dapt_attention_")]
    for flag, val in (("--root", args.root), ("--config-file", args.config_file),
                      ("--dataset-config-file", args.dataset_config_file)):
        if val:
            targv += [flag, val]
    try:
        cfg = setup_cfg(train_parser().parse_args(targv + list(args.opts or [])))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    setup_logger(None, console=True)
    try:
        trainer = build_trainer(cfg)
        if args.cmd == "attention":
            if len(args.checkpoint) > 2:
                raise ValueError("give --checkpoint once or twice")
            result = render_attention(trainer, args.checkpoint, args.out, num=args.num, select=args.select,
                                      target=args.target, per_sheet=args.per_sheet, split=args.split)
        else:
            result = render_masks(trainer, args.out, num=args.num, model_dir=args.model_dir, epoch=args.load_epoch,
                                  per_sheet=args.per_sheet)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    for path in result["sheets"]:
        print(path)
    return 0, result


def cli(argv=None) -> int:
    """The ``dapt-visualize-attention`` command: the exit code only."""
    return main(argv)[0]


if __name__ == "__main__":
    sys.exit(cli())
