"""DAPT on any ``PromptMethod``: the masked training loader, the per-step terms, the hooks.

``attach_dapt(trainer)`` is called by ``PromptTrainer`` when ``DAPT.ENABLED``; it swaps the
training loader for the masking wrapper, builds the Grad-CAM bank (DAPT-G) and registers
``DAPTHook``. Inference is untouched unless the official extra background columns are asked for.

The step (``Decoupler.compute``) composes with the method: loss = the method's own terms from
``method.losses(images, labels, image_features=Z_I, text_features=T)`` + DAPT's weighted L_v,
L_f, L_b. Per step there is ONE prompted image pass with gradients, over [I; I_f; I_b], and one
prompted text pass for the classes (T, shared by the method's terms and L_f). A view whose features
every active term detaches (official TRIPLET.DETACH_POS_NEG / LOSS.F_DETACH_IMAGE) leaves that pass
for one no-grad prompted pass (same values, no autograd graph). Frozen no-grad passes: the
un-prompted CLIP on I_b for L_b's pseudo-labels (``DAPT.BG.PSEUDO_LABEL frozen_clip``; reused from
the prompted pass when the method keeps CLIP's image encoder, CoOp), the frozen background
sentences (computed once); DAPT-G's Grad-CAM runs once per epoch, not per step.
This module talks to the trainer only by duck typing (cfg, dm, device, epoch, register_hooks).
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

import torch
from torch.utils.data import DataLoader

from dapt.decouple.background import split_background
from dapt.decouple.gradcam import GradCamMasker, shard_batches
from dapt.decouple.losses import DAPTLoss, background_pseudo_labels, scaled_logits
from dapt.decouple.masks import MaskStore
from dapt.decouple.paired import PairedTransform, full_view_transform
from dapt.decouple.quality import MaskQuality, check_degrade, degrade_name, resolve_quality_store
from dapt.decouple.triplet import make_triplet
from dapt.decouple.wrapper import FullViewDataset, MaskBank, MaskingDataset, StoreMasks
from dapt.methods.base import PromptMethod

logger = logging.getLogger(__name__)

MASK_SOURCES = ("gradcam", "precomputed")


def dataset_dirs(dataset):
    """(dataset_dir, image_root) of a Dassl-style dataset."""
    ddir = getattr(dataset, "dataset_dir", None)
    if not ddir:
        raise ValueError(f"{type(dataset).__name__} has no dataset_dir; DAPT's mask store lives under it")
    return ddir, getattr(dataset, "image_dir", None) or ddir


class Decoupler:
    """Builds the triplet and DAPT's terms for one training step of a prompt method."""

    def __init__(self, cfg, multi_label: bool = False):
        self.cfg = cfg
        d = cfg.DAPT
        if d.MASK.SOURCE not in MASK_SOURCES:
            raise ValueError(f"DAPT.MASK.SOURCE '{d.MASK.SOURCE}' must be gradcam or precomputed")
        check_degrade(d.MASK)
        if d.BG.CTX not in ("auto", "frozen_tokens", "shared_context"):
            raise ValueError(f"DAPT.BG.CTX '{d.BG.CTX}' must be auto, frozen_tokens or shared_context")
        if d.BG.PSEUDO_LABEL not in ("frozen_clip", "prompted"):
            raise ValueError(f"DAPT.BG.PSEUDO_LABEL '{d.BG.PSEUDO_LABEL}' must be frozen_clip or prompted")
        if d.TRIPLET.IMAGE_SPACE not in ("normalized", "pixel"):
            raise ValueError(f"DAPT.TRIPLET.IMAGE_SPACE '{d.TRIPLET.IMAGE_SPACE}' must be normalized or pixel")
        # masking raw pixels then normalising fills with black: FILL.MODE pixel_black (the blur modes are
        # linear per channel, so they are the same in both spaces)
        pixel = d.TRIPLET.IMAGE_SPACE == "pixel" and d.FILL.MODE == "normalized_zero"
        self.fill = "pixel_black" if pixel else d.FILL.MODE
        self.loss = DAPTLoss(d.LOSS, d.TRIPLET, multi_label)
        self.fg_extra, self.bg_names = split_background(d.BG)
        from dapt.decouple.background import load_background_classes

        self.eval_extra = load_background_classes(d.BG.CLASSES)[: int(d.BG.EVAL_EXTRA)]
        self.multi_label = multi_label
        self._warned: set = set()
        self._bg_ctx: Optional[str] = None if d.BG.CTX == "auto" else d.BG.CTX
        self.last_terms: Dict[str, torch.Tensor] = {}  # the last step's unweighted terms, on the device
        self.epoch_fg: List[torch.Tensor] = []  # per-step mask foreground fractions, on the device

    @property
    def last(self) -> Dict[str, float]:
        """The last step's unweighted terms and mask foreground fraction as floats (one host sync)."""
        if not self.last_terms:
            return {}
        names = list(self.last_terms)
        values = torch.stack([self.last_terms[k].float().reshape(()) for k in names]).tolist()
        return dict(zip(names, values))

    # ----------------------------------------------------------------- text
    def background_context(self, method, text_fg: Optional[torch.Tensor] = None) -> str:
        """auto: the method's deep text prompts reach frozen background sentences (MaPLe, IVLP); a method
        whose only text parameters are first-layer context (CoOp) puts that context in front of the
        background names, otherwise L_b would be constant on its text side."""
        if self._bg_ctx is None:
            if text_fg is None:
                text_fg = method.encode_text()
            shallow = method.text_layer_prompts() is None and text_fg.requires_grad
            self._bg_ctx = "shared_context" if shallow else "frozen_tokens"
            logger.info("DAPT.BG.CTX auto -> %s", self._bg_ctx)
        return self._bg_ctx

    def prompted_text(self, method, names: List[str]) -> torch.Tensor:
        if self.background_context(method) == "shared_context":
            return method.encode_text_with_context(names)
        return method.encode_texts([self.cfg.DAPT.BG.TEMPLATE.format(n) for n in names])

    def frozen_background_text(self, method) -> torch.Tensor:
        """Un-prompted features of the background sentences (the method caches them)."""
        return method.frozen_text_features([self.cfg.DAPT.BG.TEMPLATE.format(n) for n in self.bg_names]).detach()

    def foreground_text(self, method, extra: List[str]) -> torch.Tensor:
        text = method.encode_text()
        if extra:
            text = torch.cat([text, self.prompted_text(method, extra)], dim=0)
        return text

    # ----------------------------------------------------------------- step
    def compute(self, method, images, masks, labels, epoch: int, mask_bg=None):
        """({name: weighted term}, logits) for one batch: the method's own terms (its "cls" scaled by
        DAPT.LOSS.W_CLS, any other term as the method weighted it) plus DAPT's active terms; the
        unweighted terms and the mask statistics go to ``self.last_terms`` (device tensors)."""
        d = self.cfg.DAPT
        active = self.loss.active(epoch)
        scale = method.logit_scale
        trip = make_triplet(images, masks, mask_bg, self.fill, self.cfg.INPUT.PIXEL_MEAN, self.cfg.INPUT.PIXEL_STD,
                            d.FILL.BLUR_KERNEL, d.FILL.BLUR_SIGMA)
        z_i, z_f, z_b = self.encode_views(method, trip, active)
        # the class texts (plus the official FG_EXTRA background columns), shared by the method and L_f
        text_fg = self.foreground_text(method, self.fg_extra)
        self.background_context(method, text_fg)
        method_terms, logits = method.losses(images, labels, image_features=z_i, text_features=text_fg)
        text_bg = pseudo = None
        if "bg" in active:
            text_bg = self.prompted_text(method, self.bg_names)
            if d.BG.PSEUDO_LABEL == "frozen_clip":
                z0 = self.frozen_background_image(method, trip.bg, z_b)
                pseudo = background_pseudo_labels(z0, self.frozen_background_text(method))
            else:
                pseudo = background_pseudo_labels(z_b.detach(), text_bg.detach())
        raw = self.loss.terms(scale, z_i, z_f, z_b, text_fg, labels, text_bg, pseudo, active)
        for k in [k for k in raw if not raw[k].requires_grad]:
            raw.pop(k)  # a term without any learnable input would only shift the logged loss
            self._once(k, f"DAPT: L_{k} has no learnable input for this method and is skipped")
        clash = set(raw) & set(method_terms)
        if clash:
            raise ValueError(f"{type(method).__name__}.losses() returns terms named {sorted(clash)}, which DAPT uses; "
                             "rename the method's terms")
        terms = dict(method_terms)
        if "cls" in terms:
            terms["cls"] = self.loss.weights["cls"] * terms["cls"]
        terms.update(self.loss.weighted(raw))
        last = {k: v.detach() for k, v in method_terms.items()}  # kept on the device: no per-step sync
        last.update({k: v.detach() for k, v in raw.items()})
        last["mask_fg_fraction"] = masks.detach().float().mean()
        self.last_terms = last
        self.epoch_fg.append(last["mask_fg_fraction"])
        return terms, logits

    @staticmethod
    def frozen_background_image(method, bg: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """Un-prompted CLIP features of I_b for L_b's pseudo-labels. A method that keeps CLIP's image
        encoder as it is (CoOp: ``encode_image`` not overridden) already computed exactly these in
        the prompted pass: they are reused. Otherwise one extra no-grad pass, in the step's
        autocast dtype (the trainer's autocast is active here)."""
        if type(method).encode_image is PromptMethod.encode_image:
            return z_b.detach()
        with torch.no_grad():
            return method.clip_model.encode_image(bg)

    def view_needs(self, active) -> Dict[str, Optional[bool]]:
        """For I_f ("fg") and I_b ("bg"): None when no active term reads the view, False when every
        term that reads it detaches it (official DETACH_POS_NEG / F_DETACH_IMAGE: the view's
        features need no autograd graph), True when a term backpropagates through it."""
        lc, tc = self.cfg.DAPT.LOSS, self.cfg.DAPT.TRIPLET
        trip = "triplet" in active
        uses_f = [not bool(lc.F_DETACH_IMAGE)] if "fg" in active else []
        uses_b = [True] if "bg" in active else []  # L_b backpropagates through Z_b
        if trip:
            uses_f.append(not bool(tc.DETACH_POS_NEG))
            uses_b.append(not bool(tc.DETACH_POS_NEG))
        return {"fg": any(uses_f) if uses_f else None, "bg": any(uses_b) if uses_b else None}

    def encode_views(self, method, trip, active):
        """(Z_I, Z_f, Z_b): ONE prompted pass with gradients over I and the views a term backpropagates
        through, batched; the views whose features every term detaches in one no-grad pass (values
        equal to the batched pass's); a view no active term reads is not encoded (None)."""
        if not active:
            return method.encode_image(trip.image), None, None
        need = self.view_needs(active)
        views = {"fg": trip.fg, "bg": trip.bg}
        grad = [k for k in ("fg", "bg") if need[k]]
        if len(grad) == 2:
            feats = method.encode_image(trip.stacked())  # I, I_f, I_b in one pass
            z_i, z_f, z_b = feats.chunk(3, dim=0)
            self._check_triplet(z_i, active)
            return z_i, z_f, z_b
        out: Dict[str, Optional[torch.Tensor]] = {"fg": None, "bg": None}
        parts = method.encode_image(torch.cat([trip.image] + [views[k] for k in grad], dim=0)).chunk(1 + len(grad))
        z_i = parts[0]
        out.update(zip(grad, parts[1:]))
        if self._check_triplet(z_i, active):
            need = self.view_needs(active)  # without L_v, fewer views may be read
        frozen = [k for k in ("fg", "bg") if need[k] is False]
        if frozen:
            with torch.no_grad():
                nog = method.encode_image(torch.cat([views[k] for k in frozen], dim=0)).chunk(len(frozen))
            out.update(zip(frozen, nog))
        return z_i, out["fg"], out["bg"]

    def _check_triplet(self, z_i: torch.Tensor, active) -> bool:
        """Drop L_v from ``active`` when I's features have no learnable input (CoOp); True if dropped."""
        if "triplet" in active and not z_i.requires_grad:
            active.discard("triplet")
            self._once("triplet", "DAPT: the image features have no learnable parameters; L_v is skipped (as for CoOp)")
            return True
        return False

    def _once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            logger.info(msg)
            self._warned.add(key)

    def compute_losses(self, trainer, batch):
        images, labels = trainer.parse_batch(batch)
        masks = batch["mask"].to(images.device, non_blocking=True)
        mask_bg = batch["mask_bg"].to(images.device, non_blocking=True) if "mask_bg" in batch else None
        return self.compute(trainer.model, images, masks, labels, trainer.epoch, mask_bg)

    def inference(self, method, images):
        if not self.eval_extra:
            return method(images)
        cached = getattr(method, "cached_text", None)  # once per evaluation (PromptMethod.text_cache)
        text = (cached("dapt_eval_text", lambda: self.foreground_text(method, self.eval_extra)) if cached
                else self.foreground_text(method, self.eval_extra))
        return scaled_logits(method.logit_scale, method.encode_image(images), text)


class DAPTHook:
    """Redraws the erasing grid, refreshes DAPT-G masks before every epoch, logs the mask statistics and,
    with ground-truth masks (DAPT.MASK.QUALITY_STORE), how well the training masks match them.

    A trainer hook (the engine's hook protocol: before/after train, epoch, step; ``trainer`` is set
    when the trainer registers it)."""

    trainer = None

    def __init__(self, decoupler: Decoupler):
        self.decoupler = decoupler
        self.masking_dataset: Optional[MaskingDataset] = None
        self.masker: Optional[GradCamMasker] = None
        self.bank: Optional[MaskBank] = None
        self.cam_loader = None
        self.cam_shards = None  # torchrun: each rank's Grad-CAM sample indices (the masks are gathered)
        self.mask_provider = None  # the training masks (StoreMasks or the MaskBank)
        self.quality: Optional[MaskQuality] = None  # ground truth the masks are measured against (rank 0)

    def before_train(self):
        build_training_data(self.trainer, self.decoupler, self)
        self.quality = build_quality(self.trainer)
        cfg = self.trainer.cfg
        if self.quality is not None and cfg.DAPT.MASK.SOURCE == "precomputed":
            # DAPT-S masks are fixed: measured once, as training reads them (degraded or not), before epoch 1
            m = cfg.DAPT.MASK
            items = self.trainer.dm.dataset.train_x
            bits = self.quality.pack_masks(self.mask_provider, lambda i: _image_size(items[i].impath))
            entry = self.quality.record(0, bits, degrade_name(m.STORE, m.DEGRADE, m.DEGRADE_PX), step=0, tag="mask")
            self.trainer.writer_add_scalar("train/mask_store_fg_fraction", entry["fg_fraction"], 0)

    def before_epoch(self):
        tr = self.trainer
        self.masking_dataset.set_epoch(tr.epoch)
        self.decoupler.epoch_fg = []
        if self.masker is not None:
            stats = self.masker.refresh(tr.model, self.cam_loader, self.bank, tr.device, shards=self.cam_shards)
            logger.info("DAPT-G: Grad-CAM masks of %d images refreshed in %.1f s (foreground fraction %.3f)",
                        stats["num"], stats["seconds"], stats["fg_fraction"])
            tr.writer_add_scalar("train/cam_fg_fraction", stats["fg_fraction"], tr.epoch)
            tr.writer_add_scalar("train/cam_seconds", stats["seconds"], tr.epoch)
            if self.quality is not None:  # rank 0, after the gather: every sample's mask is in the bank
                self.quality.record(tr.epoch + 1, self.bank.bits, "gradcam", step=tr.epoch, tag="cam")

    def after_step(self, losses):
        tr = self.trainer
        for k, v in self.decoupler.last_terms.items():  # device values, written at the next log point
            tag = k if k == "mask_fg_fraction" else f"raw_{k}"
            tr.writer_add_scalar(f"train/{tag}", v, tr.global_step)

    def after_train(self):
        if self.quality is not None:
            self.quality.flush()

    def after_epoch(self):
        fg = self.decoupler.epoch_fg
        if fg:
            logger.info("DAPT: epoch %d mean foreground fraction of the training masks %.3f (unweighted terms: %s)",
                        self.trainer.epoch + 1, float(torch.stack(fg).double().mean()),
                        " ".join(f"{k} {v:.4f}" for k, v in self.decoupler.last.items() if k != "mask_fg_fraction"))


def build_masks(cfg, dataset, data_source):
    """The mask provider of the training samples (store or Grad-CAM bank)."""
    m = cfg.DAPT.MASK
    if m.SOURCE == "gradcam":
        return MaskBank(len(data_source), cfg.INPUT.SIZE)
    ddir, root = dataset_dirs(dataset)
    decode = m.DECODE if m.DECODE != "label_map" or m.LAYOUT == "store" else "official_rgb"
    store = MaskStore(ddir, root, source=m.STORE, layout=m.LAYOUT, decode=decode)
    return StoreMasks(store, [d.impath for d in data_source], m.MISSING, degrade=(m.DEGRADE, m.DEGRADE_PX))


def _image_size(path: str):
    from PIL import Image

    with Image.open(path) as im:  # the header only
        return im.size


def build_quality(trainer) -> Optional[MaskQuality]:
    """The ground truth the training masks are measured against (DAPT.MASK.QUALITY_STORE), on rank 0 only;
    None when there is none, or nothing to learn: DAPT-S on the ground truth itself, undegraded."""
    cfg = trainer.cfg
    m = cfg.DAPT.MASK
    dataset = trainer.dm.dataset
    ddir = getattr(dataset, "dataset_dir", None)
    name = resolve_quality_store(m.QUALITY_STORE, ddir)
    if name is None or not trainer.is_main:
        return None
    if m.SOURCE == "precomputed" and m.LAYOUT == "store" and m.STORE == name and m.DEGRADE == "none":
        return None
    if m.SOURCE == "gradcam" and cfg.DAPT.CAM.VIEW != "full":
        logger.info("DAPT-G: Grad-CAM masks are not scored against %s: DAPT.CAM.VIEW %s does not keep the "
                    "view they were computed on (use full)", name, cfg.DAPT.CAM.VIEW)
        return None
    from dapt.utils.plots import Redraw  # matplotlib loads only for runs that draw

    _, root = dataset_dirs(dataset)
    return MaskQuality.from_dataset(name, ddir, root, [d.impath for d in dataset.train_x], cfg.INPUT.SIZE,
                                    output_dir=str(trainer.output_dir), writer=trainer.writer_add_scalar,
                                    start_epoch=int(getattr(trainer, "start_epoch", 0)), redraw=Redraw())


def build_training_data(trainer, decoupler: Decoupler, hook: "DAPTHook") -> None:
    """Swap the trainer's training loader for the masking wrapper; DAPT-G: the Grad-CAM bank and loader.
    Runs when training starts, so evaluation never needs masks."""
    cfg = trainer.cfg
    dm = trainer.dm
    dataset = dm.dataset
    data_source = dataset.train_x
    masks = build_masks(cfg, dataset, data_source)
    tfm = PairedTransform(cfg, mask_interp=cfg.DAPT.MASK.INTERP)
    ds = MaskingDataset(data_source, masks, tfm, cfg.DAPT.ERASE.RATE, cfg.DAPT.ERASE.CELLS, cfg.DAPT.ERASE.BACKGROUND,
                        seed=max(cfg.SEED, 0))
    bs = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    pin = trainer.device.type == "cuda"
    nw = cfg.DATALOADER.NUM_WORKERS
    # not persistent: the workers must see each epoch's state, which lives in this process (the erasing
    # grid's epoch, the refreshed Grad-CAM bank) and draw their seeds from the checkpointed RNG
    dm.train_loader_x = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=nw, drop_last=len(ds) >= bs,
                                   pin_memory=pin)
    hook.masking_dataset = ds
    hook.mask_provider = masks
    if cfg.DAPT.MASK.SOURCE == "gradcam":
        if cfg.DAPT.CAM.VIEW == "full":
            view = full_view_transform(cfg)
        elif cfg.DAPT.CAM.VIEW == "random_crop":
            import numpy as np

            paired = PairedTransform(cfg)

            def view(img):
                return paired(img, np.zeros((1, 1), np.uint8))[0]
        else:
            raise ValueError(f"DAPT.CAM.VIEW '{cfg.DAPT.CAM.VIEW}' must be full or random_crop")
        hook.masker = GradCamMasker.from_cfg(cfg.DAPT.CAM)
        hook.bank = masks
        full = FullViewDataset(data_source, view)
        cam_bs = int(cfg.DAPT.CAM.BATCH_SIZE)
        # the full view is deterministic: its workers live across epochs (a random crop reseeds per epoch)
        persistent = nw > 0 and cfg.DAPT.CAM.VIEW == "full"
        if getattr(trainer, "distributed", False):
            import torch.distributed as dist

            # torchrun: this rank computes its share of the single-process batches; the masks are gathered
            batches = shard_batches(len(full), cam_bs, dist.get_world_size())
            hook.cam_shards = [[i for b in r for i in b] for r in batches]
            hook.cam_loader = DataLoader(full, batch_sampler=batches[dist.get_rank()], num_workers=nw,
                                         pin_memory=pin, persistent_workers=persistent)
        else:
            hook.cam_loader = DataLoader(full, batch_size=cam_bs, shuffle=False, num_workers=nw, drop_last=False,
                                         pin_memory=pin, persistent_workers=persistent)


def attach_dapt(trainer) -> Decoupler:
    """Wire DAPT into a ``PromptTrainer``: the decoupler, and the hook that builds the masked
    training data when training starts and refreshes DAPT-G masks before every epoch."""
    cfg = trainer.cfg
    if hasattr(trainer.model, "conditioned_text_features"):
        raise ValueError(f"DAPT.ENABLED: {cfg.TRAINER.NAME} conditions its class texts on each image, which DAPT's "
                         "triplet does not define; use CoOp, VPT, IVLP, MaPLe or PromptSRC, or set DAPT.ENABLED False")
    decoupler = Decoupler(cfg, multi_label=trainer.multi_label)
    trainer.register_hooks([DAPTHook(decoupler)])
    logger.info("DAPT enabled: masks %s%s, weights cls %.2f v %.2f f %.2f b %.2f, schedule %s, %d background classes",
                cfg.DAPT.MASK.SOURCE, f" ({cfg.DAPT.MASK.STORE})" if cfg.DAPT.MASK.SOURCE == "precomputed" else "",
                cfg.DAPT.LOSS.W_CLS, cfg.DAPT.LOSS.W_V, cfg.DAPT.LOSS.W_F, cfg.DAPT.LOSS.W_B, cfg.DAPT.LOSS.SCHEDULE,
                len(decoupler.bg_names))
    return decoupler
