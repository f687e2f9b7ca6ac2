"""PNG sheets of where prompted models look (the paper's Grad-CAM figures) and of DAPT-G vs DAPT-S masks.

- ``render_attention``: test images, one row each; columns: the image, then the soft Grad-CAM of each
  checkpoint (one or two, e.g. MaPLe vs MaPLe+DAPT-S) over it (JET colour map, alpha 0.5), titled
  with the checkpoint's prediction, green when correct, red when wrong. ``select`` keeps all images,
  or those the first checkpoint gets wrong / right, or those where the checkpoints disagree.
- ``render_masks``: training images; columns: the image, the DAPT-G mask (binary Grad-CAM of the
  ground-truth class, ``DAPT.CAM.*``) and the DAPT-S mask (``DAPT.MASK.STORE``).

The maps come from ``GradCamMasker.raw_cam`` (the same Grad-CAM as DAPT-G), upsampled bilinearly to
``INPUT.SIZE`` and min-max normalised per image; images are the whole image resized to
``INPUT.SIZE`` (no crop), so maps and masks align with what is drawn. Both functions return the maps
they drew, so a caller (or a test) can check them.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

logger = logging.getLogger(__name__)

SELECT = ("all", "wrong", "correct", "disagree")


def soft_cam(masker, method, images: torch.Tensor, targets: torch.Tensor, size, text_features=None) -> torch.Tensor:
    """(B, H, W) Grad-CAM in [0, 1]: ``masker.raw_cam`` upsampled (bilinear) and min-max normalised per image."""
    raw = masker.raw_cam(method, images, targets, text_features)
    up = F.interpolate(raw[:, None], size=tuple(int(s) for s in size), mode="bilinear",
                       align_corners=masker.align_corners)[:, 0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = up.amax(dim=(1, 2), keepdim=True)
    return (up - lo) / (hi - lo).clamp_min(1e-12)


def heat_overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha) * image + alpha * JET(cam)``, uint8 (H, W, 3)."""
    from matplotlib import colormaps

    heat = colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3] * 255.0
    return ((1 - alpha) * rgb.astype(np.float32) + alpha * heat).clip(0, 255).astype(np.uint8)


def _figure(rows: List[List[Tuple[np.ndarray, str, str]]], path: str, cell: float = 2.0) -> str:
    """Write a grid of (image, title, title colour) cells as a PNG (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = Figure(figsize=(cell * n_cols, cell * n_rows + 0.2))  # no pyplot: headless, no global backend
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                img, title, color = row[c]
                ax.imshow(img, interpolation="nearest")
                ax.set_title(title, fontsize=7, color=color)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _loader(cfg, data_source, batch_size: int):
    from dapt.decouple.paired import full_view_transform
    from dapt.decouple.wrapper import FullViewDataset

    return DataLoader(FullViewDataset(data_source, full_view_transform(cfg)), batch_size=batch_size, shuffle=False,
                      num_workers=0)


def _states(trainer, checkpoints: Sequence[Tuple[str, str, Optional[int]]]):
    """Yield (label) after loading each checkpoint's prompts into the trainer ("" = the initial prompts)."""
    initial = {k: v.clone() for k, v in trainer.get_model_state().items()}
    for label, model_dir, epoch in checkpoints:
        trainer.load_model_state(initial)
        if model_dir:
            trainer.load_model(model_dir, epoch=epoch)
        yield label
    trainer.load_model_state(initial)


def render_attention(trainer, checkpoints: Sequence[Tuple[str, str, Optional[int]]], out_dir: str, num: int = 16,
                     select: str = "all", target: str = "label", per_sheet: int = 8, split: str = "test") -> dict:
    """Grad-CAM sheets of ``num`` images of ``split`` for one or two checkpoints ((label, model_dir, epoch);
    model_dir "" = the prompts as built). ``target``: the CAM of the true class (label) or of each
    checkpoint's prediction (pred). Returns {"impaths", "labels", "maps": {label: (N, H, W)},
    "preds": {label: (N,)}, "sheets": [png paths]}."""
    from dapt.decouple.gradcam import GradCamMasker
    from dapt.decouple.visualize import denormalize

    if select not in SELECT:
        raise ValueError(f"--select '{select}' must be one of {', '.join(SELECT)}")
    if target not in ("label", "pred"):
        raise ValueError(f"--target '{target}' must be label or pred")
    if not 1 <= len(checkpoints) <= 2:
        raise ValueError("give one or two checkpoints")
    cfg = trainer.cfg
    data = list(getattr(trainer.dm.dataset, split) or [])
    if not data:
        raise ValueError(f"the dataset has no {split} split")
    masker = GradCamMasker.from_cfg(cfg.DAPT.CAM)
    method = trainer.model
    method.eval()
    size = tuple(int(s) for s in cfg.INPUT.SIZE)
    bs = int(cfg.DATALOADER.TEST.BATCH_SIZE)
    preds: Dict[str, torch.Tensor] = {}
    for label in _states(trainer, checkpoints):  # predictions on the whole split first, for --select
        with torch.no_grad():
            text = method.encode_text()
            out = [method.logits(method.encode_image(b["img"].to(trainer.device)), text).argmax(1).cpu()
                   for b in _loader(cfg, data, bs)]
        preds[label] = torch.cat(out)
    labels = torch.tensor([int(d.label) for d in data])
    first = preds[checkpoints[0][0]]
    keep = {"all": torch.ones_like(labels, dtype=torch.bool), "wrong": first != labels, "correct": first == labels,
            "disagree": (first != preds[checkpoints[-1][0]]) if len(checkpoints) == 2 else first != first}[select]
    chosen = torch.nonzero(keep).flatten()[:num].tolist()
    if not chosen:
        logger.warning("no %s image matches --select %s; nothing drawn", split, select)
    sub = [data[i] for i in chosen]
    maps: Dict[str, torch.Tensor] = {}
    for label in _states(trainer, checkpoints):
        with torch.no_grad():
            text = method.encode_text()
        cams = []
        for b in _loader(cfg, sub, bs):
            idx = torch.as_tensor([chosen[i] for i in b["index"].tolist()])
            tgt = labels[idx] if target == "label" else preds[label][idx]
            cams.append(soft_cam(masker, method, b["img"].to(trainer.device), tgt.to(trainer.device), size, text).cpu())
        maps[label] = torch.cat(cams) if cams else torch.zeros(0, *size)
    names = trainer.dm.lab2cname
    images = torch.cat([b["img"] for b in _loader(cfg, sub, bs)]) if sub else torch.zeros(0)
    sheets = []
    for s in range(0, len(sub), per_sheet):
        rows = []
        for j in range(s, min(s + per_sheet, len(sub))):
            rgb = denormalize(images[j], cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD)
            y = int(labels[chosen[j]])
            row = [(rgb, f"{os.path.basename(sub[j].impath)}\ntrue: {names.get(y, y)}", "black")]
            for label, _, _ in checkpoints:
                p = int(preds[label][chosen[j]])
                row.append((heat_overlay(rgb, maps[label][j].numpy()), f"{label}: {names.get(p, p)}",
                            "green" if p == y else "red"))
            rows.append(row)
        sheets.append(_figure(rows, os.path.join(out_dir, f"attention_{s // per_sheet:03d}.png")))
    return {"impaths": [d.impath for d in sub], "labels": labels[chosen] if chosen else labels[:0],
            "maps": maps, "preds": {k: v[chosen] if chosen else v[:0] for k, v in preds.items()}, "sheets": sheets}


def render_masks(trainer, out_dir: str, num: int = 16, model_dir: str = "", epoch: Optional[int] = None,
                 per_sheet: int = 8) -> dict:
    """DAPT-G vs DAPT-S masks of the first ``num`` training images. DAPT-G: the binary Grad-CAM
    (``DAPT.CAM.*``) of the true class with the prompts of ``model_dir`` ("" = as built); DAPT-S: the
    ``DAPT.MASK.STORE`` masks, resized (nearest) to INPUT.SIZE. Returns {"impaths", "labels", "gmasks",
    "smasks", "sheets"}."""
    from PIL import Image

    from dapt.decouple.gradcam import GradCamMasker
    from dapt.decouple.integration import dataset_dirs
    from dapt.decouple.masks import MaskStore
    from dapt.decouple.visualize import denormalize, mask_overlay

    cfg = trainer.cfg
    data = list(trainer.dm.dataset.train_x)[:num]
    m = cfg.DAPT.MASK
    ddir, root = dataset_dirs(trainer.dm.dataset)
    decode = m.DECODE if m.DECODE != "label_map" or m.LAYOUT == "store" else "official_rgb"
    store = MaskStore(ddir, root, source=m.STORE, layout=m.LAYOUT, decode=decode)
    size = tuple(int(s) for s in cfg.INPUT.SIZE)
    masker = GradCamMasker.from_cfg(cfg.DAPT.CAM)
    gm, images = [], []
    for _ in _states(trainer, [("g", model_dir, epoch)]):
        method = trainer.model.eval()
        with torch.no_grad():
            text = method.encode_text()
        for b in _loader(cfg, data, int(cfg.DAPT.CAM.BATCH_SIZE)):
            gm.append(masker(method, b["img"].to(trainer.device), b["label"].to(trainer.device), size=size,
                             text_features=text).cpu())
            images.append(b["img"])
    sm = [np.asarray(Image.fromarray(store.read(d.impath)).resize((size[1], size[0]), Image.NEAREST)) for d in data]
    gmasks = torch.cat(gm) if gm else torch.zeros(0, *size)
    smasks = torch.from_numpy(np.stack(sm)).float() if sm else torch.zeros(0, *size)
    images = torch.cat(images) if images else torch.zeros(0)
    names = trainer.dm.lab2cname
    sheets = []
    for s in range(0, len(data), per_sheet):
        rows = []
        for j in range(s, min(s + per_sheet, len(data))):
            rgb = denormalize(images[j], cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD)
            y = int(data[j].label)
            g, sm_ = gmasks[j].numpy() > 0.5, smasks[j].numpy() > 0.5
            rows.append([(rgb, f"{os.path.basename(data[j].impath)}\n{names.get(y, y)}", "black"),
                         (mask_overlay(rgb, g), f"DAPT-G ({g.mean():.2f})", "black"),
                         (mask_overlay(rgb, sm_), f"DAPT-S {m.STORE} ({sm_.mean():.2f})", "black")])
        sheets.append(_figure(rows, os.path.join(out_dir, f"masks_{s // per_sheet:03d}.png")))
    return {"impaths": [d.impath for d in data], "labels": torch.tensor([int(d.label) for d in data]),
            "gmasks": gmasks, "smasks": smasks, "sheets": sheets}
