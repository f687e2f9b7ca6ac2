"""DAPT-S masks for any dataset: text-prompted segmenters write the mask store, and two stores compare.

A segmenter is one class (``Segmenter``): given a batch of RGB images and, for each image, the
class names it shows (one for single-label data, every positive class for multi-label data), it
returns per-name foreground scores in [0, 1] at each image's own resolution. ``segment_images``
turns them into the store's label maps (0 background; 1 foreground, or 1 + class index of the
best-scoring class on multi-label data), skips images that already have a mask made with the same
settings, refuses a store made with other settings unless told to overwrite, and writes the
manifest. ``compare_stores`` measures two stores against each other.

Backends:

* ``ClipEsSegmenter`` (``clipes``): CLIP-ES-style masks from the configured CLIP, no extra weights.
  After CLIP-ES (Lin et al., CVPR 2023): the Grad-CAM target is the *softmax* probability of the
  class, taken over the image's own class prompts plus background prompts ("a clean origami {}."
  over the paper's 25 background words), which suppresses background and co-occurring regions;
  the activations are the input of the last visual block (its ``ln_1`` output); the channel
  weights are the spatial mean of the gradient (canonical Grad-CAM); the CAM is min-max normalised
  and refined with class-aware attention affinity: the patch-to-patch self-attention of the last
  ``attn_layers`` blocks (head mean), Sinkhorn-normalised, symmetrised and squared, restricted to
  the boxes around the CAM's connected regions above ``box_threshold``, propagates the CAM.
  Differences from CLIP-ES: the image is resized to INPUT.SIZE (CLIP-ES keeps the image's aspect
  at a multiple of the patch size), single scale, no CRF and no segmentation network trained on top.
* ``ClipSegSegmenter`` (``clipseg``): CLIPSeg through Hugging Face ``transformers`` (the
  ``segment`` extra), weights from a local folder or a hub name, offline first.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dapt.data.data_manager import read_image
from dapt.decouple.masks import MaskStore

logger = logging.getLogger(__name__)

SEGMENT_EXTRA_HINT = 'pip install -e ".[segment]"'
CLIPSEG_DEFAULT = "CIDAS/clipseg-rd64-refined"
# the settings a finished mask must share with a new run to be kept (resume)
IDENTITY_KEYS = ("backend", "checkpoint", "text_prompt_template", "threshold", "backend_settings")


class SettingsMismatchError(ValueError):
    """The store holds masks made with other settings."""


# ---------------------------------------------------------------------------------------- interface
class Segmenter:
    """One text-prompted segmenter. Subclass it and implement ``predict``; set ``name`` (the backend
    name in the manifest), ``checkpoint`` (what identifies its weights) and ``template`` (how a class
    name becomes a prompt; "{}" is the name). ``settings()`` returns anything else that changes its
    masks (recorded in the manifest and compared on resume)."""

    name: str = "segmenter"
    checkpoint: str = ""
    template: str = "{}"
    default_threshold: float = 0.5

    def settings(self) -> Dict[str, object]:
        return {}

    def to(self, device) -> "Segmenter":
        return self

    def prompts(self, names: Sequence[str]) -> List[str]:
        return [self.template.format(n) for n in names]

    def predict(self, images: List[Image.Image], names: List[List[str]]) -> List[np.ndarray]:
        """For image i, a float array (len(names[i]), H_i, W_i) of foreground scores in [0, 1], one
        map per class name, at the image's own size (``Image.size`` = (W_i, H_i))."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------- CLIP-ES
def connected_boxes(binary: np.ndarray) -> np.ndarray:
    """A (h, w) {0, 1} mask that is 1 inside the bounding box of every 8-connected region of ``binary``."""
    h, w = binary.shape
    seen = np.zeros_like(binary, dtype=bool)
    out = np.zeros((h, w), np.float32)
    for y0 in range(h):
        for x0 in range(w):
            if not binary[y0, x0] or seen[y0, x0]:
                continue
            stack = [(y0, x0)]
            seen[y0, x0] = True
            ys, xs = [y0], [x0]
            while stack:
                y, x = stack.pop()
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < h and 0 <= nx < w and binary[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            stack.append((ny, nx))
                            ys.append(ny)
                            xs.append(nx)
            out[min(ys):max(ys) + 1, min(xs):max(xs) + 1] = 1.0
    return out


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-row min-max normalisation of (B, ...) to [0, 1] (a constant row becomes 0)."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-7)).reshape(x.shape)


def affinity_transition(attn: torch.Tensor, sinkhorn_iters: int = 3) -> torch.Tensor:
    """CLIP-ES's transition matrix from (B, n, n) attention: alternate column/row normalisation,
    symmetrise, square."""
    t = attn
    for _ in range(sinkhorn_iters):
        t = t / t.sum(dim=1, keepdim=True).clamp_min(1e-12)
        t = t / t.sum(dim=2, keepdim=True).clamp_min(1e-12)
    t = (t + t.transpose(1, 2)) / 2
    return t @ t


class ClipEsSegmenter(Segmenter):
    """CLIP-ES-style masks from a frozen open_clip ViT (see the module docstring)."""

    name = "clipes"

    def __init__(self, clip_model, tokenizer, preprocess: Callable[[Image.Image], torch.Tensor], checkpoint: str,
                 template: str = "a clean origami {}.", background: Sequence[str] = (), refine: bool = True,
                 box_threshold: float = 0.4, attn_layers: int = 8, device="cpu"):
        self.model = clip_model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.checkpoint = checkpoint
        self.template = template
        if not background:
            from dapt.decouple.background import PAPER25

            background = PAPER25
        self.background = list(background)
        self.refine = bool(refine)
        self.box_threshold = float(box_threshold)
        self.attn_layers = int(attn_layers)
        self.device = torch.device(device)
        self._text: Dict[str, torch.Tensor] = {}
        visual = clip_model.visual
        try:
            self.blocks = list(visual.transformer.resblocks)
        except AttributeError:
            raise ValueError(f"the clipes backend needs a ViT image tower; {type(visual).__name__} has none") from None
        gs = getattr(visual, "grid_size", None)
        if gs is None:
            raise ValueError("the clipes backend needs a ViT with a patch grid (visual.grid_size)")
        self.grid = (int(gs[0]), int(gs[1]))
        self.model.to(self.device)

    def settings(self) -> Dict[str, object]:
        return {"background": self.background, "refine": self.refine, "box_threshold": self.box_threshold,
                "attn_layers": self.attn_layers}

    def to(self, device) -> "ClipEsSegmenter":
        self.device = torch.device(device)
        self.model.to(self.device)
        self._text = {k: v.to(self.device) for k, v in self._text.items()}
        return self

    def text_features(self, names: Sequence[str]) -> torch.Tensor:
        """Normalised frozen text features of ``template.format(name)`` (cached)."""
        todo = [n for n in dict.fromkeys(names) if n not in self._text]
        if todo:
            with torch.no_grad():
                tok = self.tokenizer([self.template.format(n) for n in todo]).to(self.device)
                feats = F.normalize(self.model.encode_text(tok).float(), dim=-1)
            self._text.update(zip(todo, feats))
        return torch.stack([self._text[n] for n in names]) if names else torch.zeros(0, 1, device=self.device)

    def _attention(self, block, y: torch.Tensor) -> Optional[torch.Tensor]:
        """Head-mean self-attention (B, N, N) of a block from its ``ln_1`` output (batch first)."""
        attn = block.attn
        w = getattr(attn, "in_proj_weight", None)
        if w is None:
            return None
        b = attn.in_proj_bias
        qkv = F.linear(y, w, b)
        q, k, _ = qkv.chunk(3, dim=-1)
        B, N, D = q.shape
        h = attn.num_heads
        q = q.reshape(B, N, h, D // h).transpose(1, 2)
        k = k.reshape(B, N, h, D // h).transpose(1, 2)
        return torch.softmax(q @ k.transpose(-1, -2) / (D // h) ** 0.5, dim=-1).mean(dim=1)

    def cams(self, x: torch.Tensor,
             names: List[List[str]]) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """(cam (B, K, gh, gw) min-max normalised, attention (B, n, n) or None, valid (B, K)) for a batch
        of preprocessed images, K = the most names of any image."""
        gh, gw = self.grid
        n = gh * gw
        B = x.shape[0]
        K = max(len(v) for v in names)
        store: Dict[str, torch.Tensor] = {}
        ln_outs: List[torch.Tensor] = []
        last = self.blocks[-1].ln_1
        attn_from = self.blocks[-self.attn_layers:] if self.refine else []

        def grad_hook(_m, _i, out):
            leaf = out.detach().requires_grad_(True)
            store["act"] = leaf
            return leaf

        def keep_hook(_m, _i, out):
            ln_outs.append(out.detach())

        handles = [blk.ln_1.register_forward_hook(keep_hook) for blk in attn_from]
        handles.append(last.register_forward_hook(grad_hook))
        try:
            with torch.enable_grad():
                z = F.normalize(self.model.encode_image(x).float(), dim=-1)
        finally:
            for hd in handles:
                hd.remove()
        act = store["act"]
        if act.shape[0] != B:  # a non-batch-first transformer: (N, B, D)
            act_bf = act.transpose(0, 1)
            ln_outs = [o.transpose(0, 1) for o in ln_outs]
        else:
            act_bf = act
        # the image's own class prompts (padded to K) next to the background prompts
        own = torch.zeros(B, K, z.shape[1], device=z.device)
        valid = torch.zeros(B, K, dtype=torch.bool, device=z.device)
        bg_mask = torch.ones(B, len(self.background), dtype=torch.bool, device=z.device)
        for i, nm in enumerate(names):
            own[i, :len(nm)] = self.text_features(nm)
            valid[i, :len(nm)] = True
            for j, b in enumerate(self.background):
                if b in nm:  # a class that is also a background word stays a class
                    bg_mask[i, j] = False
        bg = self.text_features(self.background)
        scale = float(self.model.logit_scale.exp()) if hasattr(self.model, "logit_scale") else 100.0
        logits_own = scale * torch.einsum("be,bke->bk", z, own).masked_fill(~valid, float("-inf"))
        logits_bg = scale * (z @ bg.t()).masked_fill(~bg_mask, float("-inf"))
        probs = torch.softmax(torch.cat([logits_own, logits_bg], dim=1), dim=1)
        a = act_bf.detach().float()[:, 1:1 + n]
        cams = []
        for k in range(K):
            score = (probs[:, k] * valid[:, k]).sum()
            if not score.requires_grad:
                cams.append(torch.zeros(B, n, device=z.device))
                continue
            grad, = torch.autograd.grad(score, act, retain_graph=k < K - 1)
            g = (grad.transpose(0, 1) if act.shape[0] != B else grad).float()[:, 1:1 + n]
            alpha = g.mean(dim=1, keepdim=True)  # channel weights: spatial mean of the gradient
            cams.append(F.relu((a * alpha).sum(dim=-1)))
        cam = minmax(torch.stack(cams, dim=1).reshape(B * K, n)).reshape(B, K, gh, gw)
        attn = None
        if self.refine:
            maps = [self._attention(blk, y) for blk, y in zip(attn_from, ln_outs)]
            if any(m is None for m in maps):
                logger.warning("clipes: the image tower's attention has no in_proj_weight; no affinity refinement")
            else:
                attn = torch.stack([m[:, 1:1 + n, 1:1 + n] for m in maps]).mean(dim=0)
        return cam, attn, valid

    def refine_cams(self, cam: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Propagate (B, K, gh, gw) CAMs with the attention affinity inside each CAM's boxes."""
        B, K, gh, gw = cam.shape
        trans = affinity_transition(attn.float())  # (B, n, n)
        out = torch.zeros_like(cam)
        for i in range(B):
            for k in range(K):
                c = cam[i, k]
                box = connected_boxes((c >= self.box_threshold * float(c.max())).cpu().numpy() & (float(c.max()) > 0))
                box_t = torch.from_numpy(box).to(c.device).reshape(1, -1)
                out[i, k] = ((trans[i] * box_t) @ c.reshape(-1, 1)).reshape(gh, gw)
        return minmax(out.reshape(B * K, -1)).reshape(B, K, gh, gw)

    def predict(self, images: List[Image.Image], names: List[List[str]]) -> List[np.ndarray]:
        x = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        cam, attn, _ = self.cams(x, names)
        if attn is not None:
            cam = self.refine_cams(cam, attn)
        out = []
        for i, im in enumerate(images):
            w, h = im.size
            k = len(names[i])
            up = F.interpolate(cam[i:i + 1, :k], size=(h, w), mode="bilinear", align_corners=False)[0]
            out.append(up.clamp(0, 1).cpu().numpy())
        return out


# ---------------------------------------------------------------------------------------- CLIPSeg
def require_transformers():
    """``transformers``, or one line saying which extra to install."""
    try:
        import transformers
    except ImportError:
        raise ImportError(f"the clipseg backend needs Hugging Face transformers: {SEGMENT_EXTRA_HINT}") from None
    return transformers


class ClipSegSegmenter(Segmenter):
    """CLIPSeg (Lueddecke & Ecker, CVPR 2022) through ``transformers``: one sigmoid map per (image, prompt)."""

    name = "clipseg"

    def __init__(self, weights: str = CLIPSEG_DEFAULT, template: str = "a photo of a {}.", device="cpu"):
        tf = require_transformers()
        self.template = template
        self.device = torch.device(device)
        path = os.path.expanduser(weights)
        local = os.path.isdir(path)
        self.checkpoint = os.path.abspath(path) if local else weights
        hint = (f"put a folder holding config.json, the model weights and the processor files (what "
                f"CLIPSegForImageSegmentation.save_pretrained and CLIPSegProcessor.save_pretrained write) at some PATH "
                f"and pass --weights PATH, or run once with network access (HF_HUB_OFFLINE unset) to cache {weights}")
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        attempts = [True] if (local or offline) else [True, False]
        last = None
        for local_only in attempts:
            try:
                self.processor = tf.CLIPSegProcessor.from_pretrained(self.checkpoint, local_files_only=local_only)
                self.model = tf.CLIPSegForImageSegmentation.from_pretrained(self.checkpoint,
                                                                            local_files_only=local_only)
                break
            except (OSError, ValueError) as exc:
                last = exc
        else:
            where = f"folder {self.checkpoint} is incomplete ({str(last).splitlines()[0]})" if local else \
                f"'{weights}' is not a folder and not in the Hugging Face cache"
            raise FileNotFoundError(f"CLIPSeg weights: {where}; {hint}") from None
        self.model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def to(self, device) -> "ClipSegSegmenter":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @torch.no_grad()
    def predict(self, images: List[Image.Image], names: List[List[str]]) -> List[np.ndarray]:
        pairs = [(i, p) for i, nm in enumerate(names) for p in self.prompts(nm)]
        if not pairs:
            return [np.zeros((0, im.size[1], im.size[0]), np.float32) for im in images]
        enc = self.processor(text=[p for _, p in pairs], images=[images[i] for i, _ in pairs], padding=True,
                             return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        logits = self.model(**enc).logits
        logits = logits.reshape(len(pairs), logits.shape[-2], logits.shape[-1])
        probs = torch.sigmoid(logits.float())
        out, start = [], 0
        for i, im in enumerate(images):
            k = len(names[i])
            w, h = im.size
            up = F.interpolate(probs[start:start + k, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            out.append(up.clamp(0, 1).cpu().numpy())
            start += k
        return out


# ---------------------------------------------------------------------------------------- dataset -> store
@dataclass
class Item:
    """One image to segment: its path, the class names it shows and their class indices."""
    impath: str
    names: List[str]
    classes: List[int]


def dataset_items(data_source, classnames: Sequence[str], multi_label: bool = False) -> List[Item]:
    """The ``Item`` of every training sample: the class name (single-label) or every positive class
    (multi-label, multi-hot labels)."""
    items = []
    for d in data_source:
        if multi_label:
            cls = [i for i, v in enumerate(np.asarray(d.label).ravel()) if v]
        else:
            cls = [int(d.label)]
        items.append(Item(d.impath, [classnames[c] for c in cls], cls))
    return items


def label_map(scores: np.ndarray, classes: Sequence[int], threshold: float, multi_label: bool) -> np.ndarray:
    """The store's label map of one image from its (K, H, W) scores: 0 background, foreground where
    the best class score passes ``threshold``; 1 there (single-label), or 1 + the class index of the
    best-scoring class (multi-label, capped at 254; 255 is void)."""
    if scores.shape[0] == 0:
        raise ValueError("an image has no class name to prompt the segmenter with")
    best = scores.max(axis=0)
    fg = best > threshold
    if not multi_label:
        return fg.astype(np.uint8)
    ids = np.minimum(np.asarray(classes)[scores.argmax(axis=0)] + 1, 254)
    return np.where(fg, ids, 0).astype(np.uint8)


@dataclass
class SegmentSummary:
    count: int = 0
    computed: int = 0
    skipped: int = 0
    fg_fraction: float = 0.0
    empty: List[str] = field(default_factory=list)
    full: List[str] = field(default_factory=list)
    root: str = ""

    def lines(self) -> List[str]:
        out = [f"{self.count} masks in {self.root} ({self.computed} computed, {self.skipped} already there with the "
               f"same settings); mean foreground fraction {self.fg_fraction:.3f}"]
        for what, paths in (("an empty", self.empty), ("a full", self.full)):
            if paths:
                out.append(f"{len(paths)} images have {what} mask (first: {', '.join(paths[:3])})")
        return out


def identity(segmenter: Segmenter, threshold: float) -> Dict[str, object]:
    return {"backend": segmenter.name, "checkpoint": segmenter.checkpoint,
            "text_prompt_template": segmenter.template, "threshold": float(threshold),
            "backend_settings": json.loads(json.dumps(segmenter.settings()))}


def check_resume(store: MaskStore, existing: int, ident: Dict[str, object]) -> None:
    """Raise ``SettingsMismatchError`` (one line) when the store's masks were made with other settings."""
    if not existing:
        return
    man = store.read_manifest() or {}
    diff = [k for k in IDENTITY_KEYS if man.get(k) != ident[k]]
    if diff:
        shown = "; ".join(f"{k}: {man.get(k, '(not recorded)')!r} -> {ident[k]!r}" for k in diff[:2])
        raise SettingsMismatchError(
            f"{store.root} already holds {existing} of these masks, made with other settings ({shown}); "
            "pass --overwrite to replace them or --source NAME for a new store")


def segment_images(segmenter: Segmenter, items: Sequence[Item], store: MaskStore, threshold: Optional[float] = None,
                   batch_size: int = 16, overwrite: bool = False, multi_label: bool = False, dataset: str = "",
                   progress: bool = True) -> SegmentSummary:
    """Write the mask of every item into ``store`` (label maps, original resolution) and its manifest.

    An image that already has a mask is kept when the manifest names the same backend, checkpoint,
    prompt template, threshold and backend settings; any other settings raise
    ``SettingsMismatchError`` unless ``overwrite``."""
    from tqdm import tqdm

    thr = float(segmenter.default_threshold if threshold is None else threshold)
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} must be at least 1")
    ident = identity(segmenter, thr)
    have = [it for it in items if store.exists(it.impath)]
    if not overwrite:
        check_resume(store, len(have), ident)
    todo = list(items) if overwrite else [it for it in items if not store.exists(it.impath)]
    generator = f"dapt.decouple.segment {segmenter.name} ({segmenter.checkpoint})"

    def manifest(count, complete):
        store.write_manifest(count, generator=generator, dataset=dataset, split="train",
                             text_prompt_template=segmenter.template, backend=segmenter.name,
                             checkpoint=segmenter.checkpoint, threshold=thr,
                             backend_settings=ident["backend_settings"], multi_label=bool(multi_label),
                             complete=bool(complete))

    manifest(0 if overwrite else len(have), complete=False)  # settings first: an interrupted run resumes
    bar = tqdm(total=len(todo), desc=f"masks ({segmenter.name})", unit="img", disable=not progress or not todo)
    try:
        for s in range(0, len(todo), batch_size):
            batch = todo[s:s + batch_size]
            images = [read_image(it.impath) for it in batch]
            scores = segmenter.predict(images, [it.names for it in batch])
            for it, im, sc in zip(batch, images, scores):
                if sc.shape[1:] != (im.size[1], im.size[0]):
                    raise ValueError(f"{segmenter.name} returned a {sc.shape[1:]} map for {it.impath} of size "
                                     f"{im.size[1]}x{im.size[0]}; predict must return maps at the image's size")
                store.write(it.impath, label_map(sc, it.classes, thr, multi_label))
            bar.update(len(batch))
    finally:
        bar.close()
    summary = SegmentSummary(count=len(items), computed=len(todo), skipped=len(items) - len(todo), root=store.root)
    fg = 0.0
    for it in items:
        m = store.read(it.impath)
        frac = float(m.mean())
        fg += frac
        if frac == 0.0:
            summary.empty.append(it.impath)
        elif frac == 1.0:
            summary.full.append(it.impath)
    summary.fg_fraction = fg / max(len(items), 1)
    manifest(len(items), complete=True)
    return summary


def build_segmenter(cfg, backend: str, weights: str = "", template: str = "", device=None,
                    refine: bool = True) -> Segmenter:
    """A built-in backend for a config: ``clipes`` on MODEL.BACKBONE, ``clipseg`` from ``weights``."""
    from dapt.utils.misc import resolve_device

    device = device or resolve_device(cfg)
    if backend == "clipes":
        from dapt.decouple.paired import full_view_transform
        from dapt.models.clip import build_clip_from_cfg, find_weights, get_tokenizer

        b = cfg.MODEL.BACKBONE
        if weights:
            raise ValueError("--weights is for clipseg; the clipes backend uses MODEL.BACKBONE.NAME / WEIGHTS")
        model = build_clip_from_cfg(cfg)
        src = find_weights(b.NAME, b.WEIGHTS, b.CACHE_DIR or None) if b.PRETRAINED else None
        ckpt = f"{b.NAME} ({src if src is not None else (b.WEIGHTS or 'random weights')})"
        return ClipEsSegmenter(model, get_tokenizer(b.NAME), full_view_transform(cfg), ckpt,
                               template=template or "a clean origami {}.", refine=refine, device=device)
    if backend == "clipseg":
        return ClipSegSegmenter(weights or CLIPSEG_DEFAULT, template=template or "a photo of a {}.", device=device)
    raise ValueError(f"--backend '{backend}' must be clipes or clipseg (or pass your own Segmenter to segment_images)")


# ---------------------------------------------------------------------------------------- compare
@dataclass
class Comparison:
    mean_iou: float
    fg_a: float
    fg_b: float
    pairs: List[Tuple[str, float]]  # (relpath, IoU), worst first
    only_a: List[str]
    only_b: List[str]


def open_store(folder: str) -> Tuple[MaskStore, str]:
    """A ``MaskStore`` reading ``<dataset_dir>/masks/<source>`` (any folder named so), and a virtual image root."""
    folder = os.path.abspath(folder.rstrip(os.sep))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"mask store {folder} does not exist")
    parent = os.path.dirname(folder)
    if os.path.basename(parent) != "masks":
        raise ValueError(f"{folder} is not a mask store: pass <dataset_dir>/masks/<source>")
    root = os.path.join(folder, ".images")  # relpaths below the store map to image paths below this root
    return MaskStore(os.path.dirname(parent), root, source=os.path.basename(folder)), root


def store_relpaths(folder: str) -> List[str]:
    out = []
    for d, _, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(".png"):
                out.append(os.path.relpath(os.path.join(d, f), folder))
    return sorted(out)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Foreground IoU of two {0, 1} masks; two empty masks agree (1.0)."""
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _resize_nearest(m: np.ndarray, shape) -> np.ndarray:
    if m.shape == tuple(shape):
        return m
    return np.asarray(Image.fromarray(m.astype(np.uint8)).resize((shape[1], shape[0]), Image.NEAREST))


def compare_stores(folder_a: str, folder_b: str) -> Comparison:
    """Per-image foreground IoU of the masks both stores hold (B resized to A's size, nearest), their
    mean, and the mean foreground fraction of each store over those images."""
    sa, ra = open_store(folder_a)
    sb, rb = open_store(folder_b)
    rel_a, rel_b = store_relpaths(sa.root), store_relpaths(sb.root)
    set_b = set(rel_b)
    both = [r for r in rel_a if r in set_b]
    if not both:
        raise ValueError(f"{sa.root} and {sb.root} have no mask of the same image (same relative path)")
    pairs, fa, fb = [], 0.0, 0.0
    for r in both:
        a = sa.read(os.path.join(ra, r))
        b = _resize_nearest(sb.read(os.path.join(rb, r)), a.shape)
        pairs.append((r, iou(a, b)))
        fa += float(a.mean())
        fb += float(b.mean())
    n = len(both)
    pairs.sort(key=lambda t: (t[1], t[0]))
    set_a = set(rel_a)
    return Comparison(sum(v for _, v in pairs) / n, fa / n, fb / n, pairs,
                      [r for r in rel_a if r not in set_b], [r for r in rel_b if r not in set_a])


def disagreement_sheet(folder_a: str, folder_b: str, comparison: Comparison, out_png: str, worst: int = 8,
                       image_root: str = "", cell: int = 96) -> str:
    """A PNG with one row per worst pair: [image |] mask A | mask B | disagreement (A only red, B only blue)."""
    sa, ra = open_store(folder_a)
    sb, rb = open_store(folder_b)
    rows = comparison.pairs[:max(1, worst)]
    cols = 4 if image_root else 3
    pad = 4
    size = (cols * cell + (cols - 1) * pad, len(rows) * cell + (len(rows) - 1) * pad)
    sheet = Image.new("RGB", size, (255, 255, 255))
    for r_i, (rel, _) in enumerate(rows):
        a = sa.read(os.path.join(ra, rel)).astype(bool)
        b = _resize_nearest(sb.read(os.path.join(rb, rel)), a.shape).astype(bool)
        tiles = []
        if image_root:
            stem = os.path.splitext(os.path.join(image_root, rel))[0]
            cand = [stem + e for e in (".png", ".jpg", ".jpeg", ".JPEG", ".JPG", ".bmp", ".webp")]
            found = next((c for c in cand if os.path.isfile(c)), None)
            tiles.append(read_image(found) if found else Image.new("RGB", (a.shape[1], a.shape[0]), (128, 128, 128)))
        tiles.append(Image.fromarray((a * 255).astype(np.uint8)).convert("RGB"))
        tiles.append(Image.fromarray((b * 255).astype(np.uint8)).convert("RGB"))
        diff = np.zeros(a.shape + (3,), np.uint8)
        diff[a & b] = (255, 255, 255)
        diff[a & ~b] = (220, 40, 40)
        diff[b & ~a] = (40, 80, 230)
        tiles.append(Image.fromarray(diff))
        for c_i, t in enumerate(tiles):
            sheet.paste(t.resize((cell, cell), Image.NEAREST), (c_i * (cell + pad), r_i * (cell + pad)))
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    sheet.save(out_png)
    return out_png
