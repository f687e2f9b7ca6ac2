"""DAPT-S and DAPT-G train end to end on MaPLe (tiny CLIP, a stand-in data manager, exact masks)."""
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dapt.config import get_cfg_default
from dapt.decouple.masks import MaskStore

CLASSES = ["red", "green", "blue"]
COLORS = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]


def make_data(root):
    img_dir = root / "images"
    store = MaskStore(str(root), str(img_dir), source="gt")
    items = []
    rng = np.random.default_rng(0)
    for i in range(9):
        c = i % 3
        arr = np.full((40, 48, 3), 90, np.uint8)
        y0, x0 = rng.integers(2, 18), rng.integers(2, 22)
        arr[y0:y0 + 20, x0:x0 + 24] = COLORS[c]
        p = img_dir / CLASSES[c] / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(p)
        mask = np.zeros((40, 48), np.uint8)
        mask[y0:y0 + 20, x0:x0 + 24] = 1
        store.write(str(p), mask)
        items.append(SimpleNamespace(impath=str(p), label=c, classname=CLASSES[c]))
    return items, img_dir


def stand_in_dm(root):
    items, img_dir = make_data(root)
    x = torch.randn(6, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    test = DataLoader([{"img": x[i], "label": y[i]} for i in range(6)], batch_size=3)
    dataset = SimpleNamespace(train_x=items, dataset_dir=str(root), image_dir=str(img_dir), multi_label=False)
    return SimpleNamespace(dataset=dataset, train_loader_x=None, val_loader=None, test_loader=test,
                           classnames=CLASSES, lab2cname=dict(enumerate(CLASSES)), num_classes=3)


def make_cfg(tiny_name, out, source):
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/trainers/MaPLe/dapt_vit_b16_t.yaml")
    cfg.MODEL.BACKBONE.NAME = tiny_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.INPUT.SIZE = (32, 32)
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 3
    cfg.DAPT.CAM.BATCH_SIZE = 4
    cfg.OPTIM.MAX_EPOCH = 2
    cfg.OPTIM.LR = 0.01
    cfg.OUTPUT_DIR = str(out)
    cfg.DAPT.MASK.SOURCE = source
    cfg.DAPT.MASK.STORE = "gt"
    cfg.TRAIN.PRINT_FREQ = 1
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("source", ["precomputed", "gradcam"])
def test_dapt_trains_end_to_end(tmp_path, tiny_name, source, caplog):
    from dapt.trainers.maple import MaPLe

    cfg = make_cfg(tiny_name, tmp_path / "out", source)
    torch.manual_seed(0)
    trainer = MaPLe(cfg, dm=stand_in_dm(tmp_path / "data"))
    assert trainer.dapt is not None
    before = {k: v.clone() for k, v in trainer.model.learnable_parameters().items()}
    with caplog.at_level(logging.INFO):
        trainer.train()
    meters = trainer.epoch_meters
    for k in ("loss_cls", "loss_fg", "loss_bg", "loss_triplet"):
        assert k in meters and np.isfinite(meters[k].avg), k
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.learnable_parameters().items())
    text = caplog.text
    assert "mean foreground fraction" in text
    if source == "gradcam":
        assert text.count("Grad-CAM masks of 9 images refreshed") == 2  # before every epoch
    else:
        # exact masks: the object covers 20x24 of 40x48 pixels, so about a quarter of each crop
        assert 0.05 < trainer.dapt.last["mask_fg_fraction"] < 0.95
    assert (tmp_path / "out" / "tensorboard").is_dir()
    assert trainer.last_results  # inference ran on the plain test images


def test_coop_dapt_skips_triplet(tmp_path, tiny_name):
    from dapt.trainers.coop import CoOp

    cfg = make_cfg(tiny_name, tmp_path / "out", "precomputed")
    cfg.OPTIM.MAX_EPOCH = 1
    cfg.TRAINER.COOP.N_CTX = 2
    cfg.TRAINER.COOP.CTX_INIT = ""
    trainer = CoOp(cfg, dm=stand_in_dm(tmp_path / "data"))
    trainer.train()
    assert {"loss_cls", "loss_fg", "loss_bg"} <= set(trainer.epoch_meters)
    assert "loss_triplet" not in trainer.epoch_meters


def test_missing_masks_fail_when_training_starts(tmp_path, tiny_name):
    from dapt.trainers.maple import MaPLe

    cfg = make_cfg(tiny_name, tmp_path / "out", "precomputed")
    cfg.DAPT.MASK.STORE = "seem"
    trainer = MaPLe(cfg, dm=stand_in_dm(tmp_path / "data"))
    trainer.test()  # evaluation needs no masks
    with pytest.raises(FileNotFoundError, match="9 of 9 training images have no mask"):
        trainer.train()


@pytest.mark.parametrize("name", ["VPT", "IVLP", "MaPLe", "CoOp"])
def test_every_method_gets_gradients_from_dapt(tiny_clip, tokenizer, name):
    import importlib

    from dapt.decouple.integration import Decoupler

    mod = {"VPT": "vpt", "IVLP": "ivlp", "MaPLe": "maple", "CoOp": "coop"}[name]
    cls = getattr(importlib.import_module(f"dapt.trainers.{mod}"), f"{name}Method")
    cfg = get_cfg_default()
    node = {"VPT": "VPT", "IVLP": "IVLP", "MaPLe": "MAPLE", "CoOp": "COOP"}[name]
    for key in ("PROMPT_DEPTH", "PROMPT_DEPTH_VISION", "PROMPT_DEPTH_TEXT"):
        if key in getattr(cfg.TRAINER, node):
            setattr(getattr(cfg.TRAINER, node), key, 2)
    torch.manual_seed(0)
    method = cls(cfg, CLASSES, tiny_clip, tokenizer)
    x = torch.randn(2, 3, 32, 32)
    m = torch.zeros(2, 1, 32, 32)
    m[..., 8:24, 8:24] = 1
    losses, logits = Decoupler(cfg).compute(method, x, m, torch.tensor([0, 2]), epoch=0)
    assert set(losses) == ({"cls", "fg", "bg"} if name == "CoOp" else {"cls", "fg", "bg", "triplet"})
    params = list(method.learnable_parameters().values())
    for k in ("fg", "bg") + (() if name == "CoOp" else ("triplet",)):
        grads = torch.autograd.grad(losses[k], params, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), (name, k)
