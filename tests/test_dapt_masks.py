"""Mask store, official import, missing-mask policy, paired augmentation, erasing, triplet fills."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dapt.config import get_cfg_default
from dapt.decouple.masks import MaskStore, import_official, read_mask_file, relpath_png
from dapt.decouple.paired import PairedTransform, grid_erase
from dapt.decouple.triplet import make_triplet
from dapt.decouple.wrapper import MaskBank, MaskingDataset, StoreMasks


def write_img(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return str(path)


def test_store_roundtrip_and_label_map_decode(tmp_path):
    img = write_img(tmp_path / "images" / "cls_a" / "x.jpg", np.zeros((6, 8, 3), np.uint8))
    store = MaskStore(str(tmp_path), str(tmp_path / "images"), source="seem")
    assert relpath_png(img, str(tmp_path / "images")) == "cls_a/x.png"
    lab = np.array([[0, 1, 7, 255], [254, 0, 255, 3]], np.uint8)  # any resolution
    p = store.write(img, lab)
    assert p == str(tmp_path / "masks" / "seem" / "cls_a" / "x.png")
    assert Image.open(p).mode == "L"
    np.testing.assert_array_equal(store.read(img), [[0, 1, 1, 0], [1, 0, 0, 1]])
    store.write_manifest(1, generator="test")
    m = json.loads((tmp_path / "masks" / "seem" / "manifest.json").read_text())
    assert m["encoding"] == "label_map_0bg_255void" and m["count"] == 1
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="single-channel"):
        read_mask_file(str(tmp_path / "rgb.png"))


def test_missing_mask_error_names_file_and_count(tmp_path):
    root = tmp_path / "images"
    imgs = [write_img(root / f"{i}.jpg", np.zeros((4, 4, 3), np.uint8)) for i in range(3)]
    store = MaskStore(str(tmp_path), str(root), source="gt")
    store.write(imgs[0], np.ones((4, 4), np.uint8))
    with pytest.raises(FileNotFoundError) as e:
        StoreMasks(store, imgs, "error")
    msg = str(e.value)
    assert "2 of 3" in msg and str(tmp_path / "masks" / "gt" / "1.png") in msg and "DAPT.MASK.MISSING" in msg
    full = StoreMasks(store, imgs, "full")
    assert full(1, (5, 3)).shape == (3, 5) and full(1, (5, 3)).min() == 1
    assert StoreMasks(store, imgs, "empty")(2, (4, 4)).max() == 0


def test_import_official_layouts_and_decode(tmp_path):
    root = tmp_path / "images"
    flat = write_img(root / "a.jpg", np.zeros((4, 4, 3), np.uint8))
    nested = write_img(root / "dog" / "b.jpg", np.zeros((4, 4, 3), np.uint8))
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, :, 0] = 1      # foreground
    rgb[1, :, 0] = 255    # void -> background
    rgb[2, :, 1] = 9      # only in G: background for the official decode
    (tmp_path / "mask" / "dog").mkdir(parents=True)
    Image.fromarray(rgb).save(tmp_path / "mask" / "a.jpg", format="PNG")  # .jpg name, PNG content (as released)
    Image.fromarray(rgb).save(tmp_path / "mask" / "dog" / "b.jpg", format="PNG")
    done, missing = import_official([flat, nested], str(tmp_path), str(root), source="seem")
    assert done == 2 and missing == []
    store = MaskStore(str(tmp_path), str(root), source="seem")
    expect = np.zeros((4, 4), np.uint8)
    expect[0] = 1
    np.testing.assert_array_equal(store.read(flat), expect)
    np.testing.assert_array_equal(store.read(nested), expect)
    official = MaskStore(str(tmp_path), str(root), layout="official")
    np.testing.assert_array_equal(official.read(nested), expect)


def object_scene(seed):
    """A grey scene with a red rectangle; the mask is the rectangle (at half resolution)."""
    rng = np.random.default_rng(seed)
    img = np.full((96, 128, 3), 128, np.uint8)
    y0, x0 = rng.integers(10, 50), rng.integers(10, 70)
    img[y0:y0 + 36, x0:x0 + 44] = (255, 0, 0)
    mask = np.zeros((48, 64), np.uint8)
    mask[y0 // 2:(y0 + 36) // 2, x0 // 2:(x0 + 44) // 2] = 1
    return Image.fromarray(img), mask


def test_paired_augmentation_keeps_mask_on_object():
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (64, 64)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.INPUT.RRCROP_SCALE = (0.3, 1.0)
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    tfm = PairedTransform(cfg)
    torch.manual_seed(0)
    seen_flip = 0
    for s in range(20):
        img, mask = object_scene(s)
        x, m = tfm(img, mask)
        assert x.shape == (3, 64, 64) and m.shape == (1, 64, 64) and set(m.unique().tolist()) <= {0.0, 1.0}
        red = (x[0] > 0.75) & (x[1] < 0.25)
        if red.sum() < 20:
            continue
        agree = (red == (m[0] > 0)).float().mean().item()
        assert agree > 0.95, (s, agree)
        seen_flip += 1
    assert seen_flip > 5


def test_unpaired_transform_refused():
    cfg = get_cfg_default()
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "colorjitter")
    with pytest.raises(ValueError, match="colorjitter"):
        PairedTransform(cfg)


def test_grid_erase_and_epoch_redraw(tmp_path):
    m = torch.ones(1, 64, 64)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(grid_erase(m, 0.0, (16,), g), m)
    assert grid_erase(m, 1.0, (16,), g).sum() == 0
    e = grid_erase(m, 0.5, (16,), g)[0]
    cells = e.reshape(4, 16, 4, 16).permute(0, 2, 1, 3).reshape(16, -1)
    assert ((cells.min(1).values == cells.max(1).values)).all()  # whole 16-px cells
    root = tmp_path / "im"
    paths = [write_img(root / "a.png", np.full((64, 64, 3), 200, np.uint8))]
    store = MaskStore(str(tmp_path), str(root), source="gt")
    store.write(paths[0], np.ones((64, 64), np.uint8))
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (64, 64)
    ds = MaskingDataset([SimpleNamespace(impath=paths[0], label=0)], StoreMasks(store, paths), PairedTransform(cfg),
                        erase_rate=0.5)
    a, b = ds[0]["mask"], ds[0]["mask"]
    assert torch.equal(a, b) and torch.equal(ds[0]["mask_bg"], torch.ones(1, 64, 64))
    draws = []
    for ep in range(4):
        ds.set_epoch(ep)
        draws.append(ds[0]["mask"])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_triplet_fills():
    x = torch.randn(2, 3, 12, 12)
    m = torch.zeros(2, 1, 12, 12)
    m[:, :, :2] = 1
    t = make_triplet(x, m)
    assert torch.equal(t.fg[:, :, :2], x[:, :, :2]) and (t.fg[:, :, 2:] == 0).all()
    assert torch.equal(t.bg[:, :, 2:], x[:, :, 2:]) and (t.bg[:, :, :2] == 0).all()
    assert torch.equal(t.stacked(), torch.cat([x, t.fg, t.bg]))
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    t = make_triplet(x, m, fill="pixel_black", mean=mean, std=std)
    black = torch.tensor([-0.5 / 0.2, -0.4 / 0.25, -0.3 / 0.5]).view(1, 3, 1, 1)
    assert torch.allclose(t.fg[:, :, 2:], black.expand(2, 3, 10, 12))
    t = make_triplet(x, m, fill="blur_reverse")
    assert torch.equal(t.fg[:, :, :2], x[:, :, :2]) and not torch.equal(t.fg[:, :, 2:], x[:, :, 2:])
    t = make_triplet(x, m, fill="blur_soft")
    assert torch.allclose(t.fg + t.bg, x, atol=1e-6)


def test_bank_roundtrip():
    bank = MaskBank(3, (5, 7))
    masks = (torch.rand(2, 5, 7) > 0.5).float()
    bank.put([2, 0], masks)
    np.testing.assert_array_equal(bank.get(2), masks[0].numpy())
    np.testing.assert_array_equal(bank.get(0), masks[1].numpy())
    with pytest.raises(RuntimeError, match="sample 1"):
        bank.get(1)
