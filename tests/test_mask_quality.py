"""Masks measured, not assumed: IoU and foreground fractions of the training masks against ground truth
(DAPT.MASK.QUALITY_STORE), degraded ground-truth masks (DAPT.MASK.DEGRADE), grid erasing on small images."""
import json
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dapt.config import get_cfg_default
from dapt.decouple.masks import MaskStore
from dapt.decouple.quality import (dilate, erode, mask_iou, packed_fraction, packed_iou, resolve_quality_store)
import test_dapt_cli
from test_dapt_train import make_cfg, stand_in_dm
from test_run_outputs import tensorboard_scalars

REPO = test_dapt_cli.REPO
pets_root = test_dapt_cli.pets_root  # the miniature Oxford-Pets layout with its masks/gt (a fixture)


# ----------------------------------------------------------------------------- independent references
def brute_dilate(m, r):
    h, w = m.shape
    out = np.zeros_like(m)
    for y in range(h):
        for x in range(w):
            out[y, x] = m[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].any()
    return out


def brute_erode(m, r):
    """Every pixel of the (2r+1) window that lies inside the image is foreground (outside counts as foreground)."""
    h, w = m.shape
    out = np.zeros_like(m)
    for y in range(h):
        for x in range(w):
            out[y, x] = m[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].all()
    return out


def nearest(m, h, w):
    """Nearest-neighbour resize by index arithmetic: source pixel floor((i + 0.5) * H / h)."""
    H, W = m.shape
    ys = np.minimum(((np.arange(h) + 0.5) * H / h).astype(int), H - 1)
    xs = np.minimum(((np.arange(w) + 0.5) * W / w).astype(int), W - 1)
    return m[ys][:, xs]


def iou_loop(p, g):
    inter = sum(1 for a, b in zip(p.ravel(), g.ravel()) if a and b)
    union = sum(1 for a, b in zip(p.ravel(), g.ravel()) if a or b)
    return 1.0 if union == 0 else inter / union


def gt_file_mask(path):
    arr = np.asarray(Image.open(path))
    return ((arr != 0) & (arr != 255)).astype(np.uint8)  # the label-map encoding the store writes


# ----------------------------------------------------------------------------- IoU and morphology
def test_iou_hand_values():
    p = np.array([[1, 1, 0], [0, 0, 0]])
    g = np.array([[1, 0, 0], [1, 0, 0]])
    assert mask_iou(p, g)[0] == pytest.approx(1 / 3)  # 1 shared pixel of 3 set in either
    z = np.zeros((2, 3))
    pair = np.stack([p, z, z, g])
    other = np.stack([p, z, g, np.ones((2, 3))])
    np.testing.assert_allclose(mask_iou(pair, other), [1.0, 1.0, 0.0, 2 / 6])  # empty vs empty is 1
    # packed 8 pixels a byte (35 pixels: padding bits must not count)
    rng = np.random.default_rng(0)
    a = rng.random((20, 5, 7)) < 0.3
    b = rng.random((20, 5, 7)) < 0.5
    a[3] = b[3] = False
    pa = np.packbits(a.reshape(20, -1), axis=1)
    pb = np.packbits(b.reshape(20, -1), axis=1)
    expected = [iou_loop(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(packed_iou(pa, pb), expected)
    np.testing.assert_allclose(mask_iou(a, b), expected)
    assert packed_fraction(pa, 35) == pytest.approx(a.mean())


@pytest.mark.parametrize("shape,r", [((9, 13), 1), ((16, 11), 2), ((7, 7), 3), ((12, 10), 0)])
def test_dilate_erode_equal_brute_force(shape, r):
    rng = np.random.default_rng(r)
    for density in (0.05, 0.3, 0.8):
        m = (rng.random(shape) < density).astype(np.uint8)
        np.testing.assert_array_equal(dilate(m, r), brute_dilate(m, r))
        np.testing.assert_array_equal(erode(m, r), brute_erode(m, r))


def test_square_grows_and_shrinks_by_exactly_r():
    m = np.zeros((30, 30), np.uint8)
    m[10:16, 12:20] = 1
    grown = np.zeros_like(m)
    grown[7:19, 9:23] = 1
    np.testing.assert_array_equal(dilate(m, 3), grown)
    shrunk = np.zeros_like(m)
    shrunk[12:14, 14:18] = 1
    np.testing.assert_array_equal(erode(m, 2), shrunk)
    np.testing.assert_array_equal(erode(dilate(m, 3), 3), m)  # closing leaves a square as it was
    assert erode(m, 3).sum() == 0  # a 6-px-high square vanishes under a 7-px erosion


# ----------------------------------------------------------------------------- keys
def test_quality_store_resolution(tmp_path):
    assert resolve_quality_store("auto", str(tmp_path)) is None  # no masks/gt/manifest.json
    assert resolve_quality_store("", str(tmp_path)) is None
    assert resolve_quality_store("auto", None) is None
    (tmp_path / "masks" / "gt").mkdir(parents=True)
    assert resolve_quality_store("auto", str(tmp_path)) is None  # a store without a manifest is not picked
    (tmp_path / "masks" / "gt" / "manifest.json").write_text("{}")
    assert resolve_quality_store("auto", str(tmp_path)) == "gt"
    assert resolve_quality_store("gt", str(tmp_path)) == "gt"
    with pytest.raises(FileNotFoundError) as e:
        resolve_quality_store("clipes", str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "DAPT.MASK.QUALITY_STORE 'clipes'" in msg and str(tmp_path / "masks" / "clipes") in msg


@pytest.mark.parametrize("key,val,match", [
    ("DEGRADE", "blur", "DAPT.MASK.DEGRADE 'blur' must be one of none, dilate, erode"),
    ("DEGRADE_PX", -1, "DAPT.MASK.DEGRADE_PX -1 must be"),
    ("DEGRADE_PX", 1.5, "DAPT.MASK.DEGRADE_PX 1.5 must be"),
    ("QUALITY_STORE", "a/b", "DAPT.MASK.QUALITY_STORE 'a/b' must be"),
])
def test_bad_values_give_one_line_errors(key, val, match):
    from dapt.decouple.integration import Decoupler

    cfg = get_cfg_default()
    setattr(cfg.DAPT.MASK, key, val)
    with pytest.raises(ValueError, match=match) as e:
        Decoupler(cfg)
    assert "\n" not in str(e.value)


def test_train_py_bad_degrade_is_one_line_and_exit_2(pets_root, tmp_path):
    cmd = [sys.executable, str(REPO / "train.py"), "--root", str(pets_root), "--trainer", "MaPLe", "--mode", "dapt-s",
           "--dataset-config-file", str(REPO / "configs/datasets/oxford_pets.yaml"),
           "--config-file", str(REPO / "configs/trainers/MaPLe/dapt_vit_b16_t.yaml"), "--output-dir", str(tmp_path),
           "MODEL.BACKBONE.NAME", "dapt-tiny-vit", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(64, 64)",
           "DATALOADER.NUM_WORKERS", "0", "DAPT.MASK.STORE", "gt", "DAPT.MASK.DEGRADE", "open"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300)
    assert r.returncode == 2
    assert "DAPT.MASK.DEGRADE 'open' must be one of none, dilate, erode" in r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr


def test_degrade_needs_precomputed_masks():
    from dapt.decouple.integration import Decoupler

    cfg = get_cfg_default()
    cfg.DAPT.MASK.SOURCE = "gradcam"
    cfg.DAPT.MASK.DEGRADE = "erode"
    with pytest.raises(ValueError, match="DAPT.MASK.DEGRADE erode degrades precomputed masks"):
        Decoupler(cfg)


def test_missing_quality_store_stops_training_naming_the_folder(tmp_path, tiny_name):
    from dapt.trainers.maple import MaPLe

    cfg = make_cfg(tiny_name, tmp_path / "out", "gradcam")
    cfg.DAPT.MASK.QUALITY_STORE = "clipes"
    trainer = MaPLe(cfg, dm=stand_in_dm(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "data" / "masks" / "clipes")):
        trainer.train()


# ----------------------------------------------------------------------------- runs
def dm_with_gt_manifest(root):
    dm = stand_in_dm(root)
    store = MaskStore(str(root), str(root / "images"), source="gt")
    store.write_manifest(9, generator="test: the drawn rectangles")
    return dm


@pytest.mark.slow
def test_dapt_g_records_the_iou_of_every_refresh(tmp_path, tiny_name, monkeypatch, caplog):
    from dapt.decouple.gradcam import GradCamMasker
    from dapt.trainers.maple import MaPLe

    snapshots = []
    refresh = GradCamMasker.refresh

    def spy(self, method, loader, bank, *a, **k):
        out = refresh(self, method, loader, bank, *a, **k)
        snapshots.append(bank.bits.copy())
        return out

    monkeypatch.setattr(GradCamMasker, "refresh", spy)
    cfg = make_cfg(tiny_name, tmp_path / "out", "gradcam")  # QUALITY_STORE auto: masks/gt has a manifest
    torch.manual_seed(0)
    dm = dm_with_gt_manifest(tmp_path / "data")
    trainer = MaPLe(cfg, dm=dm)
    with caplog.at_level(logging.INFO):
        trainer.train()
    records = json.loads((tmp_path / "out" / "mask_quality.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2] and len(snapshots) == 2
    gt = []
    for item in dm.dataset.train_x:  # independent: the PNG files, decoded and resized by index arithmetic
        path = tmp_path / "data" / "masks" / "gt" / item.classname / (item.impath.rsplit("/", 1)[1][:-4] + ".png")
        gt.append(nearest(gt_file_mask(path), 32, 32))
    for rec, bits in zip(records, snapshots):
        cams = [np.unpackbits(b)[:32 * 32].reshape(32, 32) for b in bits]
        assert rec["source"] == "gradcam"
        assert rec["iou"] == pytest.approx(np.mean([iou_loop(c, g) for c, g in zip(cams, gt)]), abs=1e-12)
        assert rec["fg_fraction"] == pytest.approx(np.mean(cams), abs=1e-12)
        assert rec["gt_fg_fraction"] == pytest.approx(np.mean(gt), abs=1e-12)
        line = (f"DAPT-G: epoch {rec['epoch']} Grad-CAM masks: IoU vs gt {rec['iou']:.3f}, foreground "
                f"{rec['fg_fraction']:.3f} (gt {rec['gt_fg_fraction']:.3f})")
        assert line in caplog.text
    assert 0.05 < records[0]["gt_fg_fraction"] < 0.5  # 20x24 of 40x48 pixels: a quarter
    with Image.open(tmp_path / "out" / "mask_quality.png") as im:
        assert im.format == "PNG" and im.size[0] > 200
    trainer.close_writer()
    scalars = tensorboard_scalars(tmp_path / "out" / "tensorboard")
    assert [s for s, _ in scalars["train/cam_iou"]] == [0, 1]
    np.testing.assert_allclose([v for _, v in scalars["train/cam_iou"]], [r["iou"] for r in records], rtol=1e-6)
    assert "train/gt_fg_fraction" in scalars and "train/cam_fg_fraction" in scalars


@pytest.mark.slow
def test_dapt_s_dilated_gt_records_its_iou(tmp_path, tiny_name):
    from dapt.trainers.maple import MaPLe

    cfg = make_cfg(tiny_name, tmp_path / "out", "precomputed")
    cfg.OPTIM.MAX_EPOCH = 1
    cfg.DAPT.MASK.DEGRADE = "dilate"
    cfg.DAPT.MASK.DEGRADE_PX = 3
    dm = dm_with_gt_manifest(tmp_path / "data")
    trainer = MaPLe(cfg, dm=dm)
    trainer.train()
    records = json.loads((tmp_path / "out" / "mask_quality.json").read_text())
    assert len(records) == 1
    rec = records[0]
    assert rec["epoch"] == 0 and rec["source"] == "gt+dilate3"
    assert rec["iou"] < 1 and rec["fg_fraction"] > rec["gt_fg_fraction"]
    hook = next(h for h in trainer.hooks if hasattr(h, "mask_provider"))
    used, gt = [], []
    for i, item in enumerate(dm.dataset.train_x):
        path = tmp_path / "data" / "masks" / "gt" / item.classname / (item.impath.rsplit("/", 1)[1][:-4] + ".png")
        raw = gt_file_mask(path)
        grown = brute_dilate(raw, 3)  # at the mask file's own resolution, before any resize
        np.testing.assert_array_equal(hook.mask_provider(i, (48, 40)), grown)  # what training reads
        used.append(nearest(grown, 32, 32))
        gt.append(nearest(raw, 32, 32))
    assert rec["iou"] == pytest.approx(np.mean([iou_loop(u, g) for u, g in zip(used, gt)]), abs=1e-12)
    assert rec["fg_fraction"] == pytest.approx(np.mean(used), abs=1e-12)
    assert rec["gt_fg_fraction"] == pytest.approx(np.mean(gt), abs=1e-12)


def test_dapt_s_on_the_ground_truth_itself_records_nothing(tmp_path, tiny_name):
    from dapt.decouple.integration import build_quality

    cfg = make_cfg(tiny_name, tmp_path / "out", "precomputed")
    trainer = SimpleNamespace(cfg=cfg, dm=dm_with_gt_manifest(tmp_path / "data"), is_main=True,
                              output_dir=tmp_path / "out", writer_add_scalar=None, start_epoch=0)
    assert build_quality(trainer) is None  # STORE gt, undegraded: IoU 1 by construction
    cfg.DAPT.MASK.DEGRADE = "erode"
    assert build_quality(trainer) is not None
    cfg.DAPT.MASK.DEGRADE = "none"
    cfg.DAPT.MASK.STORE = "seem"
    assert build_quality(trainer) is not None
    cfg.DAPT.MASK.QUALITY_STORE = ""
    assert build_quality(trainer) is None
    cfg.DAPT.MASK.QUALITY_STORE = "auto"
    trainer.is_main = False
    assert build_quality(trainer) is None  # torchrun: rank 0 measures


def test_resumed_record_keeps_the_epochs_before_the_start(tmp_path):
    from dapt.decouple.quality import MaskQuality

    dm = dm_with_gt_manifest(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    old = [{"epoch": e, "iou": 0.1 * e, "fg_fraction": 0.2, "gt_fg_fraction": 0.25, "source": "gradcam"}
           for e in (1, 2, 3)]
    (out / "mask_quality.json").write_text(json.dumps(old))
    items = dm.dataset.train_x
    q = MaskQuality.from_dataset("gt", str(tmp_path / "data"), str(tmp_path / "data" / "images"),
                                 [d.impath for d in items], (32, 32), output_dir=str(out), start_epoch=2)
    full = np.packbits(np.ones((len(items), 32 * 32), bool), axis=1)  # every mask all foreground
    entry = q.record(3, full, "gradcam")
    saved = json.loads((out / "mask_quality.json").read_text())
    assert saved[:2] == old[:2] and saved[2] == entry and len(saved) == 3
    # an all-foreground mask: IoU = the ground truth's foreground fraction, image by image
    assert entry["iou"] == pytest.approx(entry["gt_fg_fraction"]) and entry["fg_fraction"] == 1.0


def test_with_a_redraw_the_figure_waits_for_the_interval_or_the_flush(tmp_path):
    from dapt.decouple.quality import MaskQuality
    from dapt.utils.plots import Redraw

    dm = dm_with_gt_manifest(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    now = [0.0]
    items = dm.dataset.train_x
    q = MaskQuality.from_dataset("gt", str(tmp_path / "data"), str(tmp_path / "data" / "images"),
                                 [d.impath for d in items], (32, 32), output_dir=str(out),
                                 redraw=Redraw(interval=60, clock=lambda: now[0]))
    full = np.packbits(np.ones((len(items), 32 * 32), bool), axis=1)
    for epoch in (1, 2):
        now[0] += 10
        q.record(epoch, full, "gradcam")
        assert len(json.loads((out / "mask_quality.json").read_text())) == epoch  # the numbers: every record
    assert not (out / "mask_quality.png").exists()
    now[0] += 60
    q.record(3, full, "gradcam")
    assert (out / "mask_quality.png").exists()
    (out / "mask_quality.png").unlink()
    q.flush()
    assert not (out / "mask_quality.png").exists()  # nothing new since the last drawing
    q.record(4, full, "gradcam")
    q.flush()
    assert (out / "mask_quality.png").exists()


# ----------------------------------------------------------------------------- grid erasing
def test_grid_erasing_on_64px_images_with_small_cells(tmp_path):
    from dapt.decouple.paired import PairedTransform
    from dapt.decouple.wrapper import MaskingDataset, StoreMasks

    root = tmp_path / "im"
    root.mkdir()
    path = str(root / "a.png")
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(path)
    store = MaskStore(str(tmp_path), str(root), source="gt")
    store.write(path, np.ones((64, 64), np.uint8))
    cfg = get_cfg_default()
    cfg.merge_from_list(["INPUT.SIZE", "(64, 64)", "DAPT.ERASE.RATE", "0.5", "DAPT.ERASE.CELLS", "(4, 8)"])
    ds = MaskingDataset([SimpleNamespace(impath=path, label=0)], StoreMasks(store, [path]), PairedTransform(cfg),
                        cfg.DAPT.ERASE.RATE, cfg.DAPT.ERASE.CELLS)
    drawn = []
    kept = []
    for epoch in range(24):
        ds.set_epoch(epoch)
        m = ds[0]["mask"][0]
        assert m.shape == (64, 64)
        # the erased mask is made of whole aligned cells of one drawn size: 4 or 8 px (a random 4-px grid
        # that happens to be an 8-px grid has probability 8**-64)
        fits = [c for c in (4, 8) if (m.reshape(64 // c, c, 64 // c, c).amin((1, 3))
                                      == m.reshape(64 // c, c, 64 // c, c).amax((1, 3))).all()]
        assert 4 in fits, epoch
        drawn.append(max(fits))
        kept.append(float(m.mean()))
    assert set(drawn) == {4, 8}  # both cell sizes are drawn over the epochs
    assert 0.35 < np.mean(kept) < 0.65  # about half the cells erased
