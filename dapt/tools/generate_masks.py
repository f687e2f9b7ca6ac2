"""Write DAPT foreground masks into the mask store, convert the official release's masks, and
draw what DAPT trains on.

    # Grad-CAM masks of the training images (current or trained prompts) -> <dataset_dir>/masks/gradcam_cache
    python tools/generate_masks.py gradcam --root $DATA --trainer MaPLe \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/MaPLe/dapt_vit_b16_t.yaml [--model-dir output/...] DATASET.NUM_SHOTS 16

    # the official release's <dataset_dir>/mask/... -> <dataset_dir>/masks/seem (0/1 PNG label maps)
    python tools/generate_masks.py import-official --dataset-dir $DATA/oxford_pets --image-root $DATA/oxford_pets/images

    # text-prompted segmenter masks of the training images -> <dataset_dir>/masks/<source> (resumable)
    python tools/generate_masks.py segment --backend clipes --source clipes --root $DATA \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/MaPLe/dapt_vit_b16_t.yaml
    python tools/generate_masks.py segment --backend clipseg --weights /path/to/clipseg-rd64-refined ...

    # mean IoU and foreground fractions of two stores, and a PNG sheet of the worst disagreements
    python tools/generate_masks.py compare $DATA/oxford_pets/masks/clipseg $DATA/oxford_pets/masks/seem \
        --sheet worst.png

    # image | mask | I_f | I_b sheets of training batches, as the masking loader yields them
    python tools/generate_masks.py visualize --root $DATA --trainer MaPLe --dataset-config-file ... \
        --config-file ... --out overlays --batches 2 DAPT.MASK.STORE gt
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def common_args(p):
    p.add_argument("--root", default="", help="dataset root ($DATA)")
    p.add_argument("--trainer", default="", help="method, e.g. MaPLe")
    p.add_argument("--config-file", default="")
    p.add_argument("--dataset-config-file", default="")
    p.add_argument("--output-dir", default="", help="OUTPUT_DIR for the trainer's log (default: a temp folder)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")


def build_cfg(args, dapt: bool):
    import tempfile

    from dapt.cli import build_parser, setup_cfg

    argv = []
    for flag, val in (("--root", args.root), ("--trainer", args.trainer), ("--config-file", args.config_file),
                      ("--dataset-config-file", args.dataset_config_file)):
        if val:
            argv += [flag, val]
    argv += ["--output-dir", args.output_dir or tempfile.mkdtemp(prefix="dapt_masks_")]
    argv += list(args.opts or []) + ["DAPT.ENABLED", str(dapt)]
    return setup_cfg(build_parser().parse_args(argv))


def cmd_gradcam(args) -> int:
    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader

    from dapt.decouple.gradcam import GradCamMasker
    from dapt.decouple.integration import dataset_dirs
    from dapt.decouple.masks import MaskStore
    from dapt.decouple.paired import full_view_transform
    from dapt.decouple.wrapper import FullViewDataset
    from dapt.engine.build import build_trainer

    trainer = build_trainer(build_cfg(args, dapt=False))
    cfg = trainer.cfg
    if args.model_dir:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
    data = trainer.dm.dataset.train_x
    ddir, root = dataset_dirs(trainer.dm.dataset)
    store = MaskStore(ddir, root, source=args.source)
    loader = DataLoader(FullViewDataset(data, full_view_transform(cfg)), batch_size=cfg.DAPT.CAM.BATCH_SIZE,
                        num_workers=cfg.DATALOADER.NUM_WORKERS)
    masker = GradCamMasker.from_cfg(cfg.DAPT.CAM)
    method = trainer.model.eval()
    with torch.no_grad():
        text = method.encode_text()
    n = 0
    for batch in loader:
        masks = masker(method, batch["img"].to(trainer.device), batch["label"].to(trainer.device), text_features=text)
        for idx, m in zip(batch["index"].tolist(), masks):
            impath = data[idx].impath
            with Image.open(impath) as im:
                size = im.size
            small = Image.fromarray(m.cpu().numpy().astype(np.uint8), mode="L")
            store.write(impath, np.asarray(small.resize(size, Image.NEAREST)))
            n += 1
    store.write_manifest(n, generator=f"dapt Grad-CAM ({cfg.TRAINER.NAME}, {cfg.MODEL.BACKBONE.NAME}, "
                         f"weighting {cfg.DAPT.CAM.WEIGHTING}, threshold {cfg.DAPT.CAM.THRESHOLD})",
                         dataset=cfg.DATASET.NAME, model_dir=args.model_dir or "")
    print(f"wrote {n} masks to {store.root}")
    return 0


def cmd_import(args) -> int:
    from dapt.decouple.masks import import_official

    root = args.image_root or args.dataset_dir
    paths = sorted(str(p) for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_EXT
                   and os.sep + "mask" + os.sep not in str(p) and os.sep + "masks" + os.sep not in str(p))
    if not paths:
        print(f"error: no images under {root}; pass --image-root", file=sys.stderr)
        return 2
    done, missing = import_official(paths, args.dataset_dir, root, source=args.source)
    print(f"converted {done} masks into {os.path.join(args.dataset_dir, 'masks', args.source)}; "
          f"{len(missing)} images have none" + (" (listed in missing.txt)" if missing else ""))
    return 0


def cmd_visualize(args) -> int:
    from dapt.decouple.triplet import make_triplet
    from dapt.decouple.visualize import triplet_sheet
    from dapt.engine.build import build_trainer

    trainer = build_trainer(build_cfg(args, dapt=True))
    cfg = trainer.cfg
    os.makedirs(args.out, exist_ok=True)
    from dapt.decouple.integration import DAPTHook

    for h in trainer.hooks:  # DAPT-G: compute the masks the first epoch would use
        if isinstance(h, DAPTHook):
            h.before_train()
            h.before_epoch()
    names = trainer.dm.lab2cname
    for b, batch in enumerate(trainer.dm.train_loader_x):
        if b >= args.batches:
            break
        d = cfg.DAPT
        t = make_triplet(batch["img"], batch["mask"], batch.get("mask_bg"), d.FILL.MODE, cfg.INPUT.PIXEL_MEAN,
                         cfg.INPUT.PIXEL_STD, d.FILL.BLUR_KERNEL, d.FILL.BLUR_SIGMA)
        sheet = triplet_sheet(t.image, batch["mask"], t.fg, t.bg, cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD)
        path = os.path.join(args.out, f"triplet_{b:03d}.png")
        if args.scale > 1:
            sheet = sheet.resize((sheet.width * args.scale, sheet.height * args.scale), resample=0)
        sheet.save(path)
        labels = [names.get(int(y), str(int(y))) if batch["label"].dim() == 1 else "multi" for y in batch["label"]]
        print(f"{path}: {', '.join(labels)} (foreground fraction {float(batch['mask'].mean()):.3f})")
    return 0


def cmd_segment(args) -> int:
    from dapt.data.data_manager import DataManager
    from dapt.decouple.integration import dataset_dirs
    from dapt.decouple.masks import MaskStore
    from dapt.decouple.segment import build_segmenter, dataset_items, segment_images

    cfg = build_cfg(args, dapt=False)
    dm = DataManager(cfg)
    ds = dm.dataset
    multi = bool(getattr(ds, "multi_label", False))
    ddir, root = dataset_dirs(ds)
    device = args.device or None
    seg = build_segmenter(cfg, args.backend, weights=args.weights, template=args.template, device=device,
                          refine=not args.no_refine)
    store = MaskStore(ddir, root, source=args.source or args.backend)
    items = dataset_items(ds.train_x, ds.classnames, multi_label=multi)
    summary = segment_images(seg, items, store, threshold=args.threshold, batch_size=args.batch_size,
                             overwrite=args.overwrite, multi_label=multi, dataset=cfg.DATASET.NAME,
                             progress=not args.no_progress)
    for line in summary.lines():
        print(line)
    print(f"train with: --mode dapt-s DAPT.MASK.STORE {store.source}")
    return 0


def cmd_compare(args) -> int:
    from dapt.decouple.segment import compare_stores, disagreement_sheet

    c = compare_stores(args.store_a, args.store_b)
    print(f"{len(c.pairs)} images in both stores: mean IoU {c.mean_iou:.4f}; mean foreground fraction "
          f"A {c.fg_a:.4f}, B {c.fg_b:.4f}")
    if c.only_a or c.only_b:
        print(f"only in A: {len(c.only_a)} masks, only in B: {len(c.only_b)} masks (not compared)")
    if args.sheet:
        path = disagreement_sheet(args.store_a, args.store_b, c, args.sheet, worst=args.worst,
                                  image_root=args.image_root)
        print(f"worst {min(args.worst, len(c.pairs))} disagreements: {path} "
              f"({', '.join(f'{r} {v:.3f}' for r, v in c.pairs[:3])}{' ...' if len(c.pairs) > 3 else ''})")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gradcam", help="Grad-CAM masks of the training images into the store", allow_abbrev=False)
    g.add_argument("--source", default="gradcam_cache", help="store folder under masks/")
    g.add_argument("--model-dir", default="", help="trained prompts to load (default: the initial prompts)")
    g.add_argument("--load-epoch", type=int, default=None)
    common_args(g)
    i = sub.add_parser("import-official", help="convert the official release's mask/ folder", allow_abbrev=False)
    i.add_argument("--dataset-dir", required=True, help="<DATASET.ROOT>/<dataset_dir>, the folder holding mask/")
    i.add_argument("--image-root", default="", help="the dataset's image folder (default: --dataset-dir)")
    i.add_argument("--source", default="seem")
    v = sub.add_parser("visualize", help="write image | mask | I_f | I_b PNG sheets", allow_abbrev=False)
    v.add_argument("--out", default="dapt_overlays")
    v.add_argument("--batches", type=int, default=2)
    v.add_argument("--scale", type=int, default=1, help="enlarge the sheets (nearest) by this factor")
    common_args(v)
    s = sub.add_parser("segment", help="text-prompted segmenter masks of the training images into the store",
                       allow_abbrev=False)
    s.add_argument("--backend", default="clipes", choices=("clipes", "clipseg"),
                   help="clipes: CLIP-ES-style CAM on MODEL.BACKBONE (no extra weights); "
                   "clipseg: CLIPSeg (transformers)")
    s.add_argument("--weights", default="",
                   help="clipseg: a save_pretrained folder or a hub name (default CIDAS/clipseg-rd64-refined)")
    s.add_argument("--template", default="", help="prompt template, {} = class name (clipes: 'a clean origami {}.', "
                   "clipseg: 'a photo of a {}.')")
    s.add_argument("--threshold", type=float, default=None, help="foreground where the score passes it (default 0.5)")
    s.add_argument("--source", default="", help="store folder under masks/ (default: the backend name)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--device", default="", help="cpu | cuda | cuda:1 (default: cuda when USE_CUDA and a GPU is there)")
    s.add_argument("--overwrite", action="store_true", help="replace masks made with other settings")
    s.add_argument("--no-refine", action="store_true", help="clipes: skip the attention-affinity refinement")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    common_args(s)
    c = sub.add_parser("compare", help="mean IoU and foreground fractions of two mask stores", allow_abbrev=False)
    c.add_argument("store_a", help="<dataset_dir>/masks/<source>")
    c.add_argument("store_b", help="<dataset_dir>/masks/<source>")
    c.add_argument("--sheet", default="", help="write a PNG of the worst disagreements here")
    c.add_argument("--worst", type=int, default=8, help="rows of the sheet")
    c.add_argument("--image-root", default="", help="the dataset's image folder, to show the images in the sheet")
    args = p.parse_args(argv)
    try:
        return {"gradcam": cmd_gradcam, "import-official": cmd_import, "visualize": cmd_visualize,
                "segment": cmd_segment, "compare": cmd_compare}[args.cmd](args)
    except (FileNotFoundError, ValueError, KeyError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
