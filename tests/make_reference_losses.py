"""Writes tests/data/reference_losses.pt: one training step's loss terms and prompt gradients.

Run once, by hand, on the code as it was BEFORE the architecture redesign (issue 11):

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python tests/make_reference_losses.py

The file pins what CoOp / VPT / IVLP / MaPLe compute without DAPT, with DAPT-S (a fixed mask) and
with DAPT-G (the Grad-CAM mask of the current model), under the paper's DAPT config and under
configs/trainers/DAPT/official.yaml (at an epoch before and after its loss switch). A refactor may
change how the step is computed, never the numbers: tests/test_reference_losses.py compares the
code against this file, and nothing regenerates it. Tests never run this script; they import
``build_trainer`` / ``fixed_batch`` / ``step`` to replay the same cases.

Everything is on CPU in fp32 with the tiny open_clip config of tests/conftest.py and fixed seeds.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "data" / "reference_losses.pt"

METHODS = {"CoOp": "COOP", "VPT": "VPT", "IVLP": "IVLP", "MaPLe": "MAPLE"}
# (variant, DAPT config, epoch): "none" = the method alone; the official schedule switches at epoch 6
CASES = [("none", "paper", 0),
         ("dapt-s", "paper", 0), ("dapt-g", "paper", 0),
         ("dapt-s", "official", 0), ("dapt-g", "official", 0),
         ("dapt-s", "official", 7), ("dapt-g", "official", 7)]
BATCH = 4


def make_cfg(tiny_name: str, trainer: str, dapt: str, variant: str):
    from dapt.config import get_cfg_default, merge_from_file

    cfg = get_cfg_default()
    cfg.TRAINER.NAME = trainer
    cfg.MODEL.BACKBONE.NAME = tiny_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.USE_CUDA = False
    cfg.INPUT.SIZE = (32, 32)
    cfg.OUTPUT_DIR = ""
    node = getattr(cfg.TRAINER, METHODS[trainer])
    node.PREC = "fp32"
    for key in ("PROMPT_DEPTH", "PROMPT_DEPTH_VISION", "PROMPT_DEPTH_TEXT"):
        if key in node:
            setattr(node, key, 2)  # deep prompts in both layers of the tiny towers
    if trainer == "CoOp":
        node.N_CTX = 4
    if variant != "none":
        if dapt == "official":
            merge_from_file(cfg, str(REPO / "configs" / "trainers" / "DAPT" / "official.yaml"))
        cfg.DAPT.ENABLED = True
        cfg.DAPT.MASK.SOURCE = "gradcam" if variant == "dapt-g" else "precomputed"
    return cfg


def build_trainer(tiny_name: str, trainer: str, dapt: str, variant: str):
    """The registered trainer on the tiny CLIP (seed 0), its prompts moved off their initialisation (seed 7)."""
    sys.path.insert(0, str(HERE))
    from engine_fixtures import make_dm

    from dapt.engine.build import build_trainer as build

    cfg = make_cfg(tiny_name, trainer, dapt, variant)
    torch.manual_seed(0)
    tr = build(cfg, dm=make_dm(batch_size=BATCH))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in tr.model.learnable_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return tr


def fixed_batch():
    """Images (B, 3, 32, 32), labels, and a blocky foreground mask (B, 1, 32, 32) of 8x8 cells."""
    g = torch.Generator().manual_seed(11)
    images = torch.randn(BATCH, 3, 32, 32, generator=g)
    labels = torch.tensor([0, 2, 1, 3])
    cells = (torch.rand(BATCH, 1, 4, 4, generator=g) > 0.5).float()
    cells[:, :, 1:3, 1:3] = 1.0  # every image has some foreground
    masks = cells.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    return images, labels, masks


def gradcam_masks(tr, images, labels):
    """DAPT-G: the masks of this batch from the current prompted model (eval mode, as the per-epoch refresh)."""
    from dapt.decouple.gradcam import GradCamMasker

    masker = GradCamMasker.from_cfg(tr.cfg.DAPT.CAM)
    tr.model.eval()
    try:
        return masker(tr.model, images, labels)[:, None]
    finally:
        tr.model.train()


def step(tr, variant: str, epoch: int):
    """One training step through the trainer: weighted terms, total, training logits, gradients
    of every learnable tensor, (DAPT) the masks used and the evaluation logits."""
    images, labels, masks = fixed_batch()
    if variant == "dapt-g":
        masks = gradcam_masks(tr, images, labels)
    batch = {"img": images, "label": labels, "index": torch.arange(BATCH)}
    if variant != "none":
        batch["mask"] = masks
    tr.model.train()
    tr.epoch = epoch
    losses, logits = tr.compute_losses(batch)
    total = sum(losses.values())
    params = tr.model.learnable_parameters()
    grads = torch.autograd.grad(total, list(params.values()), allow_unused=True)
    out = {
        "terms": {k: v.detach().clone() for k, v in losses.items()},
        "total": total.detach().clone(),
        "logits": logits.detach().clone(),
        "grads": {n: (torch.zeros_like(p) if g is None else g.detach().clone())
                  for (n, p), g in zip(params.items(), grads)},
    }
    tr.model.eval()
    with torch.no_grad():
        out["eval_logits"] = tr.model_inference(images).detach().clone()
    if variant != "none":
        out["masks"] = masks.detach().clone()
    return out


def case_key(trainer: str, variant: str, dapt: str, epoch: int) -> str:
    return f"{trainer}/{variant}/{dapt}/epoch{epoch}"


def compute_all(tiny_name: str) -> dict:
    ref = {}
    for trainer in METHODS:
        for variant, dapt, epoch in CASES:
            tr = build_trainer(tiny_name, trainer, dapt, variant)
            ref[case_key(trainer, variant, dapt, epoch)] = step(tr, variant, epoch)
    return ref


def main() -> None:
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(HERE))
    from conftest import register_tiny

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = register_tiny(tmp)
        ref = compute_all(tiny)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ref, OUT)
    for k, v in ref.items():
        print(k, " ".join(f"{n}={float(t):.6f}" for n, t in v["terms"].items()), f"grads={len(v['grads'])}")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
