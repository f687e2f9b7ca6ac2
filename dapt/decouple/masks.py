"""Foreground masks on disk: the interoperable store (DAPT-S) and the official release's layout.

Store layout (docs/dapt.md, section 2): ``<dataset_dir>/masks/<source>/<relpath>.png`` where
``relpath`` is the image path relative to the dataset's image root with the extension replaced by
``.png``; single-channel 8-bit label maps (0 background, 255 void, anything else foreground) at
any resolution, plus ``manifest.json``. The official release keeps ``<dataset_dir>/mask/...``
with a per-dataset naming rule and decodes channel 0 with 255 read as background.

Binary masks saved as 0/255 (255 = foreground) have their own encoding, ``binary_0bg_255fg`` in
the manifest and ``DAPT.MASK.DECODE binary_0_255``. The decode is chosen once per store, never
per file: a manifest's encoding must agree with DAPT.MASK.DECODE, and a store without a manifest
whose sampled masks hold only 0 and 255 is refused under the label-map decode (which would read
every 255 as void). ``MaskStore.audit`` also warns once when the sampled masks look degenerate
(almost empty or almost full) or misshapen (another aspect ratio than their image).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

MISSING_POLICIES = ("error", "empty", "full")
DECODES = ("label_map", "binary_0_255", "official_rgb")
ENCODING = "label_map_0bg_255void"  # what MaskStore.write produces
ENCODINGS = {ENCODING: "label_map", "binary_0bg_255fg": "binary_0_255"}  # manifest encoding -> DAPT.MASK.DECODE
AUDIT_SAMPLE = 32  # masks read by MaskStore.audit
DEGENERATE = 0.01  # a mask whose foreground fraction is below this (or above 1 - this) counts as degenerate
_warned: set = set()  # (store root, kind) already warned about in this process


def decode_label_map(arr: np.ndarray, path: str = "") -> np.ndarray:
    """Store encoding: foreground = neither 0 nor 255 (void). Returns uint8 {0, 1}."""
    if arr.ndim != 2:
        raise ValueError(f"mask {path} has shape {arr.shape}; the store holds single-channel label maps "
                         "(convert official RGB masks with tools/generate_masks.py import-official)")
    return ((arr != 0) & (arr != 255)).astype(np.uint8)


def decode_binary(arr: np.ndarray, path: str = "") -> np.ndarray:
    """0/255 binary masks: foreground = value >= 128 (255; also mid-grey left by resampling). Returns uint8 {0, 1}."""
    if arr.ndim != 2:
        raise ValueError(f"mask {path} has shape {arr.shape}; DAPT.MASK.DECODE binary_0_255 reads single-channel masks")
    return (arr >= 128).astype(np.uint8)


def decode_official(arr: np.ndarray, path: str = "") -> np.ndarray:
    """The official decode: channel 0 of the RGB image, 255 -> background, any other non-zero -> foreground."""
    if arr.ndim == 3:
        arr = arr[..., 0]
    return ((arr != 0) & (arr != 255)).astype(np.uint8)


def read_raw(path: str, decode: str = "label_map") -> np.ndarray:
    """The pixel values of one mask file, undecoded (H, W) or (H, W, 3) for ``official_rgb``."""
    if decode not in DECODES:
        raise ValueError(f"DAPT.MASK.DECODE '{decode}' must be one of {', '.join(DECODES)}")
    try:
        with Image.open(path) as im:
            if decode == "official_rgb":
                arr = np.asarray(im.convert("RGB"))
            else:
                if im.mode not in ("L", "P", "I", "I;16", "1"):
                    raise ValueError(f"mask {path} has mode {im.mode}; the store holds single-channel 8-bit label maps "
                                     "(convert with tools/generate_masks.py import-official)")
                arr = np.asarray(im if im.mode != "1" else im.convert("L"))
                if im.mode == "1" and decode == "label_map":  # 1-bit masks are binary: set pixels are foreground
                    arr = (arr > 0).astype(np.uint8)
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"mask {path} cannot be read ({exc}); regenerate it") from None
    return arr


def read_mask_file(path: str, decode: str = "label_map") -> np.ndarray:
    """Read one mask file as a uint8 {0, 1} array (H, W)."""
    arr = read_raw(path, decode)
    if decode == "official_rgb":
        return decode_official(arr, path)
    if decode == "binary_0_255":
        return decode_binary(arr, path)
    return decode_label_map(arr, path)


def relpath_png(impath: str, image_root: str) -> str:
    """The store's relative mask path of an image: relative to the image root, extension .png."""
    rel = os.path.relpath(os.path.abspath(impath), os.path.abspath(image_root))
    if rel.startswith(".."):
        raise ValueError(f"image {impath} lies outside the image root {image_root}; masks are keyed by the path under it")
    return os.path.splitext(rel)[0] + ".png"


def official_mask_candidates(impath: str, dataset_dir: str, image_root: str) -> List[str]:
    """Where the official release may keep an image's mask (``<dataset_dir>/mask/...``), in lookup order:
    the path under the image root (SUN397, ImageNet), class folder + file name (Food101, Caltech101, DTD,
    EuroSAT, UCF101), the bare file name (Pets, Flowers, Aircraft, Cars)."""
    root = os.path.join(dataset_dir, "mask")
    parts = os.path.normpath(impath).split(os.sep)
    cands = []
    try:
        rel = os.path.relpath(os.path.abspath(impath), os.path.abspath(image_root))
        if not rel.startswith(".."):
            cands.append(os.path.join(root, rel))
    except ValueError:
        pass
    if len(parts) >= 2:
        cands.append(os.path.join(root, parts[-2], parts[-1]))
    cands.append(os.path.join(root, parts[-1]))
    out = []
    for c in cands:
        if c not in out:
            out.append(c)
    return out


class MaskStore:
    """Read and write the masks of one source (``<dataset_dir>/masks/<source>``), keyed by image path."""

    def __init__(self, dataset_dir: str, image_root: Optional[str] = None, source: str = "seem",
                 layout: str = "store", decode: Optional[str] = None):
        if layout not in ("store", "official"):
            raise ValueError(f"DAPT.MASK.LAYOUT '{layout}' must be store or official")
        self.dataset_dir = dataset_dir
        self.image_root = image_root or dataset_dir
        self.source = source
        self.layout = layout
        self.decode = decode or ("official_rgb" if layout == "official" else "label_map")
        if self.decode not in DECODES:
            raise ValueError(f"DAPT.MASK.DECODE '{self.decode}' must be one of {', '.join(DECODES)}")
        self.root = os.path.join(dataset_dir, "mask") if layout == "official" else os.path.join(dataset_dir, "masks", source)

    def path(self, impath: str) -> str:
        """The file a mask is (or would be) read from."""
        if self.layout == "official":
            cands = official_mask_candidates(impath, self.dataset_dir, self.image_root)
            for c in cands:
                if os.path.isfile(c):
                    return c
            return cands[-1]
        return os.path.join(self.root, relpath_png(impath, self.image_root))

    def exists(self, impath: str) -> bool:
        return os.path.isfile(self.path(impath))

    def read(self, impath: str) -> np.ndarray:
        """uint8 {0, 1} mask (H, W) of an image; FileNotFoundError naming the file if absent."""
        p = self.path(impath)
        if not os.path.isfile(p):
            raise FileNotFoundError(f"no mask for {impath}: expected {p}")
        return read_mask_file(p, self.decode)

    def write(self, impath: str, mask: np.ndarray) -> str:
        """Write a binary (or label) mask as a single-channel 8-bit PNG; returns the path."""
        if self.layout != "store":
            raise ValueError("writing is only supported for the store layout")
        arr = np.asarray(mask)
        if arr.ndim != 2:
            raise ValueError(f"mask for {impath} must be 2-D, got shape {arr.shape}")
        if arr.dtype == bool or arr.max(initial=0) <= 1:
            arr = (arr > 0).astype(np.uint8)
        p = self.path(impath)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        tmp = p + ".tmp"
        Image.fromarray(arr.astype(np.uint8), mode="L").save(tmp, format="PNG")
        os.replace(tmp, p)
        return p

    def missing(self, impaths: Iterable[str]) -> List[str]:
        return [p for p in impaths if not self.exists(p)]

    def check(self, impaths: Sequence[str], policy: str = "error") -> List[str]:
        """Find the images without a mask; raise (policy error) naming the first ones and the count."""
        if policy not in MISSING_POLICIES:
            raise ValueError(f"DAPT.MASK.MISSING '{policy}' must be one of {', '.join(MISSING_POLICIES)}")
        miss = self.missing(impaths)
        if miss and policy == "error":
            shown = ", ".join(self.path(p) for p in miss[:3])
            raise FileNotFoundError(
                f"{len(miss)} of {len(impaths)} training images have no mask in {self.root} (first: {shown}); "
                "generate them with tools/generate_masks.py, or set DAPT.MASK.MISSING empty|full")
        if miss:
            logger.warning("%d of %d training images have no mask in %s; using %s masks for them",
                           len(miss), len(impaths), self.root, policy)
        return miss

    def write_manifest(self, count: int, generator: str, dataset: str = "", split: str = "train",
                       text_prompt_template: str = "", encoding: str = ENCODING, **extra) -> str:
        if encoding not in ENCODINGS:
            raise ValueError(f"mask encoding '{encoding}' must be one of {', '.join(ENCODINGS)}")
        os.makedirs(self.root, exist_ok=True)
        data = {"source": self.source, "encoding": encoding, "generator": generator,
                "text_prompt_template": text_prompt_template, "count": int(count), "dataset": dataset, "split": split}
        data.update(extra)
        from dapt.utils.atomic import atomic_write_text

        p = os.path.join(self.root, "manifest.json")
        atomic_write_text(p, json.dumps(data, indent=2))
        return p

    def read_manifest(self) -> Optional[dict]:
        p = os.path.join(self.root, "manifest.json")
        if not os.path.isfile(p):
            return None
        try:
            with open(p) as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p} is not valid JSON ({exc}); fix it or delete it") from None
        if not isinstance(data, dict):
            raise ValueError(f"{p} does not hold a JSON object; fix it or delete it")
        return data

    def audit(self, impaths: Sequence[str], sample: int = AUDIT_SAMPLE) -> dict:
        """Check the decode of this store once, on up to ``sample`` masks spread over ``impaths``.

        Raises ValueError (one line naming DAPT.MASK.DECODE) when the manifest's encoding disagrees
        with the decode, or when a store without a manifest holds only 0/255 masks under the
        label-map decode. Warns once per store and process when most sampled masks are almost
        empty or almost full, or when any has another aspect ratio than its image. Returns the counts.
        """
        manifest = self.read_manifest() if self.layout == "store" else None
        enc = (manifest or {}).get("encoding")
        mpath = os.path.join(self.root, "manifest.json")
        if enc in ENCODINGS and ENCODINGS[enc] != self.decode:
            raise ValueError(f"{mpath} declares encoding '{enc}' but DAPT.MASK.DECODE is '{self.decode}'; "
                             f"set DAPT.MASK.DECODE {ENCODINGS[enc]}")
        step = max(1, len(impaths) // max(1, sample))
        picked = [p for p in list(impaths)[::step][:sample] if self.exists(p)]
        values: set = set()
        empty = full = 0
        misshapen: List[str] = []
        for impath in picked:
            path = self.path(impath)
            raw = read_raw(path, self.decode)
            values.update(np.unique(raw).tolist())
            if self.decode == "official_rgb":
                mask = decode_official(raw, path)
            elif self.decode == "binary_0_255":
                mask = decode_binary(raw, path)
            else:
                mask = decode_label_map(raw, path)
            fg = float(mask.mean()) if mask.size else 0.0
            empty += fg < DEGENERATE
            full += fg > 1 - DEGENERATE
            try:
                with Image.open(impath) as im:
                    iw, ih = im.size
            except (OSError, SyntaxError):
                continue  # an unreadable image is reported by the image loader
            mh, mw = mask.shape
            sx, sy = mw / iw, mh / ih
            if abs(sx - sy) / max(sx, sy) > 0.02 + 1.0 / min(mw, mh, iw, ih):
                misshapen.append(f"{path} ({mw}x{mh}, image {iw}x{ih})")
        n = len(picked)
        if (n and manifest is None and self.layout == "store" and self.decode == "label_map"
                and values <= {0, 255} and 255 in values):
            raise ValueError(f"{self.root} has no manifest.json and its {n} sampled masks hold only the values 0 and "
                             "255, which the label-map decode reads as background and void; set DAPT.MASK.DECODE "
                             "binary_0_255 if 255 marks the foreground")
        if n and empty + full > n / 2 and (self.root, "degenerate") not in _warned:
            _warned.add((self.root, "degenerate"))
            logger.warning("Masks in %s look degenerate: of %d sampled masks %d are (almost) all background and %d "
                           "(almost) all foreground; check DAPT.MASK.DECODE and the mask generator",
                           self.root, n, empty, full)
        if misshapen and (self.root, "misshapen") not in _warned:
            _warned.add((self.root, "misshapen"))
            logger.warning("%d of %d sampled masks in %s have another aspect ratio than their image (first: %s); "
                           "they are stretched onto the image: regenerate them from the full images",
                           len(misshapen), n, self.root, misshapen[0])
        return {"sampled": n, "empty": empty, "full": full, "misshapen": len(misshapen), "values": sorted(values)}


def import_official(impaths: Sequence[str], dataset_dir: str, image_root: str, source: str = "seem",
                    progress: Optional[Callable[[int], None]] = None) -> "tuple[int, List[str]]":
    """Convert the official release's masks (``<dataset_dir>/mask``) into the store: channel 0,
    255 -> background, non-zero -> foreground, written as 0/1 PNGs. Returns (converted, missing)."""
    src = MaskStore(dataset_dir, image_root, layout="official")
    dst = MaskStore(dataset_dir, image_root, source=source)
    done, missing = 0, []
    for i, p in enumerate(impaths):
        if not src.exists(p):
            missing.append(p)
            continue
        dst.write(p, src.read(p))
        done += 1
        if progress is not None:
            progress(i)
    dst.write_manifest(done, generator="official release (converted: channel 0, 255 -> bg, non-zero -> fg)")
    if missing:
        with open(os.path.join(dst.root, "missing.txt"), "w") as f:
            f.write("\n".join(missing) + "\n")
    return done, missing
