"""Masks measured, not assumed: the quality of the training masks against ground truth, and degraded
ground-truth masks (stand-ins for a segmenter's masks).

- ``mask_iou``: per-image IoU of binary masks (two empty masks agree: IoU 1).
- ``dilate`` / ``erode`` / ``degrade``: binary morphology with a (2r+1) x (2r+1) square, in torch
  (``erode(m) = not dilate(not m)``: pixels outside the image count as background for dilation and
  as foreground for erosion, so a mask touching the border stays there). ``DAPT.MASK.DEGRADE``
  applies it to precomputed masks at the mask file's own resolution, before the paired transform.
- ``MaskQuality``: the ground-truth masks of the training images, read once from a mask store and
  kept packed at the bank's resolution (``INPUT.SIZE``, nearest-neighbour resize, as the full view
  Grad-CAM sees); ``record`` compares a set of masks with them (IoU, foreground fractions), logs one
  line, writes tensorboard scalars and appends to ``<OUTPUT_DIR>/mask_quality.json``; it redraws
  ``mask_quality.png`` every time, or, given a ``Redraw`` (training does), at most once a minute and
  at ``flush()`` when training ends.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dapt.decouple.masks import ENCODINGS, MaskStore

logger = logging.getLogger(__name__)

DEGRADES = ("none", "dilate", "erode")
QUALITY_JSON = "mask_quality.json"
QUALITY_PNG = "mask_quality.png"
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)  # set bits of each byte value
_CHUNK = 1024  # images per packed popcount step (bounds the temporaries)


# ----------------------------------------------------------------------------- IoU
def mask_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-image IoU of binary masks ``(N, H, W)`` (or one ``(H, W)`` pair: a 1-element array).
    IoU = |P and G| / |P or G|; two empty masks give 1."""
    p = np.asarray(pred) > 0
    g = np.asarray(gt) > 0
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {p.shape} and {g.shape}")
    if p.ndim == 2:
        p, g = p[None], g[None]
    inter = (p & g).reshape(len(p), -1).sum(1)
    union = (p | g).reshape(len(p), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def packed_iou(pred_bits: np.ndarray, gt_bits: np.ndarray) -> np.ndarray:
    """``mask_iou`` of masks packed 8 pixels a byte (``np.packbits`` of the flattened masks, zero padding)."""
    out = np.empty(len(pred_bits), np.float64)
    for s in range(0, len(pred_bits), _CHUNK):
        p, g = pred_bits[s:s + _CHUNK], gt_bits[s:s + _CHUNK]
        inter = _POPCOUNT[p & g].sum(1, dtype=np.int64)
        union = _POPCOUNT[p | g].sum(1, dtype=np.int64)
        out[s:s + _CHUNK] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


def packed_fraction(bits: np.ndarray, pixels: int) -> float:
    """Mean foreground fraction of packed masks of ``pixels`` pixels each."""
    if not len(bits):
        return 0.0
    ones = sum(int(_POPCOUNT[bits[s:s + _CHUNK]].sum(dtype=np.int64)) for s in range(0, len(bits), _CHUNK))
    return ones / (len(bits) * pixels)


# ----------------------------------------------------------------------------- morphology
def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of a (H, W) mask with a (2r+1) square: a pixel is set when any pixel within
    Chebyshev distance r is. Returns uint8 {0, 1}."""
    m = (np.asarray(mask) > 0)
    r = int(r)
    if r <= 0:
        return m.astype(np.uint8)
    t = torch.from_numpy(m.astype(np.float32))[None, None]
    out = F.max_pool2d(t, kernel_size=2 * r + 1, stride=1, padding=r)  # pads with -inf: outside is background
    return (out[0, 0] > 0).numpy().astype(np.uint8)


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion with a (2r+1) square: ``not dilate(not m)`` (outside the image counts as foreground)."""
    m = np.asarray(mask) > 0
    return (1 - dilate(~m, r)).astype(np.uint8)


def check_degrade(mask_cfg) -> None:
    """One-line errors for bad ``DAPT.MASK.DEGRADE`` / ``DEGRADE_PX`` / ``QUALITY_STORE`` values."""
    mode, px = mask_cfg.DEGRADE, mask_cfg.DEGRADE_PX
    if mode not in DEGRADES:
        raise ValueError(f"DAPT.MASK.DEGRADE '{mode}' must be one of {', '.join(DEGRADES)}")
    if isinstance(px, bool) or not isinstance(px, int) or px < 0:
        raise ValueError(f"DAPT.MASK.DEGRADE_PX {px!r} must be a whole number of pixels >= 0")
    if mode != "none" and mask_cfg.SOURCE != "precomputed":
        raise ValueError(f"DAPT.MASK.DEGRADE {mode} degrades precomputed masks; set DAPT.MASK.SOURCE precomputed "
                         "or DAPT.MASK.DEGRADE none")
    q = mask_cfg.QUALITY_STORE
    if not isinstance(q, str) or os.sep in q or q in (".", ".."):
        raise ValueError(f"DAPT.MASK.QUALITY_STORE {q!r} must be auto, '' (off) or the name of a folder under "
                         "<dataset_dir>/masks/")


def degrade(mask: np.ndarray, mode: str, px: int) -> np.ndarray:
    """The mask dilated or eroded by ``px`` pixels (``mode`` none: unchanged)."""
    if mode == "none" or int(px) == 0:
        return mask
    if mode == "dilate":
        return dilate(mask, px)
    if mode == "erode":
        return erode(mask, px)
    raise ValueError(f"DAPT.MASK.DEGRADE '{mode}' must be one of {', '.join(DEGRADES)}")


def degrade_name(store: str, mode: str, px: int) -> str:
    """The source label of (possibly degraded) store masks: ``gt``, ``gt+dilate2``."""
    return store if mode == "none" or int(px) == 0 else f"{store}+{mode}{int(px)}"


# ----------------------------------------------------------------------------- ground truth
def resolve_quality_store(setting: str, dataset_dir: Optional[str]) -> Optional[str]:
    """The ground-truth store to measure against: ``auto`` -> ``gt`` when ``<dataset_dir>/masks/gt/
    manifest.json`` exists (else None); ``''`` -> None; a name -> that store (it must exist)."""
    if not setting:
        return None
    if setting == "auto":
        if dataset_dir and os.path.isfile(os.path.join(dataset_dir, "masks", "gt", "manifest.json")):
            return "gt"
        return None
    root = os.path.join(dataset_dir or "", "masks", setting)
    if not dataset_dir or not os.path.isdir(root):
        raise FileNotFoundError(f"DAPT.MASK.QUALITY_STORE '{setting}': no mask store {root}; generate it, or set "
                                "DAPT.MASK.QUALITY_STORE auto or '' (off)")
    return setting


def resize_nearest(mask: np.ndarray, size) -> np.ndarray:
    """(H, W) -> ``size`` = (h, w) with PIL's nearest neighbour (the paired transform's mask resize)."""
    h, w = int(size[0]), int(size[1])
    m = (np.asarray(mask) > 0).astype(np.uint8)
    if m.shape == (h, w):
        return m
    return np.asarray(Image.fromarray(m, mode="L").resize((w, h), resample=Image.NEAREST))


def pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(mask).reshape(-1) > 0)


class MaskQuality:
    """Ground truth of the training images at a fixed resolution; records how other masks match it."""

    def __init__(self, store: MaskStore, impaths: Sequence[str], size, output_dir: Optional[str] = None,
                 writer: Optional[Callable] = None, start_epoch: int = 0, redraw=None):
        self.store = store
        self.redraw = redraw  # dapt.utils.plots.Redraw, or None: the figure is redrawn at every record
        self.name = store.source
        self.h, self.w = int(size[0]), int(size[1])
        self.impaths = list(impaths)
        self.has_gt = np.array([store.exists(p) for p in self.impaths], bool)
        if not self.has_gt.any():
            raise FileNotFoundError(f"mask store {store.root} (DAPT.MASK.QUALITY_STORE) holds no mask of the "
                                    f"{len(self.impaths)} training images; check the store or set "
                                    "DAPT.MASK.QUALITY_STORE ''")
        missing = int((~self.has_gt).sum())
        if missing:
            logger.warning("%d of %d training images have no mask in %s; the mask quality is measured on the other %d",
                           missing, len(self.impaths), store.root, len(self.impaths) - missing)
        store.audit([p for p, ok in zip(self.impaths, self.has_gt) if ok])
        self.gt_bits = np.stack([pack(resize_nearest(store.read(p), (self.h, self.w)))
                                 for p, ok in zip(self.impaths, self.has_gt) if ok])
        self.gt_fg = packed_fraction(self.gt_bits, self.h * self.w)
        self.output_dir = output_dir
        self.writer = writer
        self.history: List[dict] = []
        self._warned = False
        if output_dir and start_epoch > 0:
            self._load(start_epoch)

    @classmethod
    def from_dataset(cls, name: str, dataset_dir: str, image_root: str, impaths, size, **kw) -> "MaskQuality":
        manifest = MaskStore(dataset_dir, image_root, source=name).read_manifest() or {}
        decode = ENCODINGS.get(manifest.get("encoding"), "label_map")  # the store's own encoding
        return cls(MaskStore(dataset_dir, image_root, source=name, decode=decode), impaths, size, **kw)

    def _load(self, start_epoch: int) -> None:
        path = os.path.join(self.output_dir, QUALITY_JSON)
        if not os.path.isfile(path):
            return
        try:
            with open(path) as f:
                saved = json.load(f)
            self.history = [dict(e) for e in saved if int(e["epoch"]) <= start_epoch]
        except (ValueError, TypeError, KeyError, OSError) as exc:
            logger.warning("%s unreadable (%s): the mask quality record restarts", path, exc)

    # ------------------------------------------------------------------ measuring
    def measure(self, bits: np.ndarray) -> dict:
        """IoU and foreground fractions of packed masks of every training sample (``MaskBank.bits`` layout)."""
        if bits.shape != (len(self.impaths), self.gt_bits.shape[1]):
            raise ValueError(f"masks of shape {bits.shape} do not match the {len(self.impaths)} training images at "
                             f"{self.h}x{self.w}")
        pred = bits[self.has_gt]
        return {"iou": float(packed_iou(pred, self.gt_bits).mean()),
                "fg_fraction": packed_fraction(pred, self.h * self.w), "gt_fg_fraction": self.gt_fg}

    def pack_masks(self, provider, image_size: Callable[[int], tuple]) -> np.ndarray:
        """Packed masks of a mask provider (``StoreMasks``: as training reads them) at this resolution."""
        return np.stack([pack(resize_nearest(provider(i, image_size(i)), (self.h, self.w)))
                         for i in range(len(self.impaths))])

    def record(self, epoch: int, bits: np.ndarray, source: str, step: int = 0, tag: str = "cam") -> dict:
        """Measure, log one line, write tensorboard scalars (``train/<tag>_iou``, ``train/gt_fg_fraction``;
        the caller writes the masks' own foreground fraction) and the json/png record."""
        res = self.measure(bits)
        entry = {"epoch": int(epoch), "iou": res["iou"], "fg_fraction": res["fg_fraction"],
                 "gt_fg_fraction": res["gt_fg_fraction"], "source": source}
        what = f"epoch {epoch} Grad-CAM masks" if source == "gradcam" else f"masks {source}"
        logger.info("%s: %s: IoU vs %s %.3f, foreground %.3f (%s %.3f)", "DAPT-G" if source == "gradcam" else "DAPT-S",
                    what, self.name, entry["iou"], entry["fg_fraction"], self.name, entry["gt_fg_fraction"])
        if self.writer is not None:
            self.writer(f"train/{tag}_iou", entry["iou"], step)
            self.writer("train/gt_fg_fraction", entry["gt_fg_fraction"], step)
        self.history = [e for e in self.history if int(e["epoch"]) != entry["epoch"]] + [entry]
        self.history.sort(key=lambda e: int(e["epoch"]))
        if self.output_dir:
            self._write(draw=self.redraw is None or self.redraw.due())
        return entry

    def flush(self) -> None:
        """Draw the figure if records arrived since it was last drawn (training ends)."""
        if self.output_dir and self.redraw is not None and self.redraw.due(final=True):
            self._write(draw=True)

    def _write(self, draw: bool) -> None:
        try:
            self.write(draw)
        except OSError as exc:  # a record is not worth the run: warn once and train on
            if not self._warned:
                logger.warning("mask quality not written (%s); training goes on", exc)
                self._warned = True

    def write(self, draw: bool = True) -> None:
        """``mask_quality.json``, and ``mask_quality.png`` when ``draw``."""
        from dapt.utils.atomic import atomic_write_text

        atomic_write_text(os.path.join(self.output_dir, QUALITY_JSON), json.dumps(self.history, indent=1))
        if not draw:
            return
        from dapt.utils.plots import mask_quality_plot

        mask_quality_plot(os.path.join(self.output_dir, QUALITY_PNG), self.history,
                          title=f"training masks vs {self.name}")
