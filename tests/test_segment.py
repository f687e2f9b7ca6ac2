"""DAPT-S masks from text-prompted segmenters (tools/generate_masks.py segment|compare, dapt.decouple.segment).

CLIPSeg runs as a tiny randomly initialised config with an offline tokenizer written here (no download)."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dapt.decouple import segment
from dapt.decouple.masks import MaskStore

REPO = Path(__file__).resolve().parents[1]
DATASET_CFG = str(REPO / "configs/datasets/objects_on_scenes.yaml")
TRAINER_CFG = str(REPO / "configs/trainers/MaPLe/toy_scenes.yaml")
SCENES = ["DATASET.SCENES.N_TRAIN", "3", "DATASET.SCENES.N_VAL", "1", "DATASET.SCENES.N_TEST", "2",
          "DATASET.SCENES.NUM_CLASSES", "3"]


def load_tool():
    return importlib.import_module("dapt.tools.generate_masks")


def make_tiny_clipseg(folder):
    """A randomly initialised CLIPSeg with a character-level CLIP tokenizer, saved like a hub folder."""
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    os.makedirs(folder, exist_ok=True)
    # the byte-level BPE alphabet: printable bytes stand for themselves, the others map above 255
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars = [chr(b) for b in keep] + [chr(256 + i) for i in range(256 - len(keep))]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")  # no merges: every word is split into characters
    tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))
    images = ViTImageProcessor(do_resize=True, size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                               image_std=[0.5] * 3)
    eos = vocab["<|endoftext|>"]
    cfg = CLIPSegConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=40, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16, reduce_dim=8, extract_layers=[0, 1], decoder_num_attention_heads=2,
        decoder_intermediate_size=16)
    torch.manual_seed(0)
    CLIPSegForImageSegmentation(cfg).save_pretrained(folder)
    CLIPSegProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def clipseg_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    return make_tiny_clipseg(tmp_path_factory.mktemp("clipseg") / "tiny-clipseg")


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("scenes_seg"))


def scenes_cfg(root, *opts):
    from dapt.cli import build_parser, setup_cfg

    argv = ["--root", root, "--dataset-config-file", DATASET_CFG, "--config-file", TRAINER_CFG,
            "--output-dir", os.path.join(root, "cfg_out"), *SCENES, *opts]
    return setup_cfg(build_parser().parse_args(argv))


def seg_args(root, *extra):
    return ["segment", "--root", root, "--dataset-config-file", DATASET_CFG, "--config-file", TRAINER_CFG,
            "--no-progress", *extra, *SCENES]


# ------------------------------------------------------------------------------------------ CLIPSeg -> DAPT-S
def test_clipseg_store_loads_through_dapt_s_and_trains(clipseg_dir, scenes_root, tmp_path, capsys):
    from dapt.data.data_manager import read_image
    from dapt.data.registry import build_dataset
    from dapt.decouple.integration import build_masks
    from dapt.decouple.paired import PairedTransform
    from dapt.decouple.wrapper import MaskingDataset

    cfg = scenes_cfg(scenes_root, "DAPT.MASK.STORE", "clipseg")
    ds = build_dataset(cfg)
    seg = segment.ClipSegSegmenter(clipseg_dir)
    # the independent computation: each image alone, prompted with its class name
    single = [seg.predict([read_image(d.impath)], [[ds.classnames[d.label]]])[0] for d in ds.train_x]
    thr = float(np.median(np.concatenate([s.ravel() for s in single])))  # a threshold that splits the maps
    tool = load_tool()
    assert tool.main(seg_args(scenes_root, "--backend", "clipseg", "--weights", clipseg_dir, "--source", "clipseg",
                              "--batch-size", "4", "--threshold", str(thr))) == 0
    out = capsys.readouterr().out
    assert f"{len(ds.train_x)} masks in" in out and "mean foreground fraction" in out

    masks = build_masks(cfg, ds, ds.train_x)  # the DAPT-S path (StoreMasks on DAPT.MASK.STORE)
    wrapped = MaskingDataset(ds.train_x, masks, PairedTransform(cfg))
    seen = set()
    for i, d in enumerate(ds.train_x):
        with Image.open(d.impath) as im:
            w, h = im.size
        m = masks(i, (w, h))
        expect = (single[i].max(axis=0) > thr).astype(np.uint8)
        assert m.shape == (h, w)
        np.testing.assert_array_equal(m, expect)
        assert wrapped[i]["impath"] == d.impath
        seen.add(m.tobytes())
    assert len(seen) > 1  # the masks differ between images, so the pairing is really checked
    man = MaskStore(ds.dataset_dir, ds.image_dir, source="clipseg").read_manifest()
    assert man["backend"] == "clipseg" and man["checkpoint"] == os.path.abspath(clipseg_dir)
    assert man["threshold"] == pytest.approx(thr) and man["text_prompt_template"] == "a photo of a {}."
    assert man["count"] == len(ds.train_x) and man["encoding"] == "label_map_0bg_255void"

    # DAPT-S training end to end through train.py on these masks
    cmd = [sys.executable, str(REPO / "train.py"), "--root", scenes_root, "--seed", "1", "--trainer", "MaPLe",
           "--mode", "dapt-s", "--dataset-config-file", DATASET_CFG, "--config-file", TRAINER_CFG,
           "--output-dir", str(tmp_path / "run"), "OPTIM.MAX_EPOCH", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
           "DAPT.MASK.STORE", "clipseg", *SCENES]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "masks precomputed (clipseg)" in log and "loss_triplet" in log and "Finish training" in log


def test_clipseg_weights_missing_offline_one_line(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as e:
        segment.ClipSegSegmenter("nobody/no-such-clipseg")
    msg = str(e.value)
    assert "\n" not in msg and "nobody/no-such-clipseg" in msg and "--weights PATH" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="is incomplete"):
        segment.ClipSegSegmenter(str(empty))


def test_missing_transformers_names_the_extra(monkeypatch, scenes_root, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(ImportError) as e:
        segment.ClipSegSegmenter("anything")
    assert str(e.value) == 'the clipseg backend needs Hugging Face transformers: pip install -e ".[segment]"'
    tool = load_tool()
    assert tool.main(seg_args(scenes_root, "--backend", "clipseg", "--weights", "anything")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '.[segment]' in err[0]


# ------------------------------------------------------------------------------------------ resume
class Brightness(segment.Segmenter):
    """A deterministic segmenter: the foreground score is the pixel's brightness; records what it saw."""

    name = "brightness"
    checkpoint = "none"
    template = "{}"

    def __init__(self):
        self.calls = []

    def predict(self, images, names):
        self.calls += [n[0] for n in names]
        return [np.repeat((np.asarray(im, np.float32).mean(-1) / 255.0)[None], len(n), 0)
                for im, n in zip(images, names)]


def _images(root, n=6):
    items = []
    rng = np.random.default_rng(1)
    for i in range(n):
        p = root / "images" / f"c{i % 2}" / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)).save(p, quality=95)
        items.append(segment.Item(str(p), [f"name{i}"], [i % 2]))
    return items


def test_resume_skips_finished_and_refuses_changed_settings(tmp_path):
    items = _images(tmp_path)
    store = MaskStore(str(tmp_path), str(tmp_path / "images"), source="bright")
    first = Brightness()
    s1 = segment.segment_images(first, items[:4], store, threshold=0.5, batch_size=3, progress=False)
    assert (s1.computed, s1.skipped) == (4, 0) and first.calls == ["name0", "name1", "name2", "name3"]
    stamps = {it.impath: os.stat(store.path(it.impath)).st_mtime_ns for it in items[:4]}
    again = Brightness()
    s2 = segment.segment_images(again, items, store, threshold=0.5, batch_size=3, progress=False)
    assert again.calls == ["name4", "name5"] and (s2.computed, s2.skipped, s2.count) == (2, 4, 6)
    assert all(os.stat(store.path(p)).st_mtime_ns == t for p, t in stamps.items())
    for it in items:  # each mask is its own image's brightness > 0.5, written as a 0/1 label map
        with Image.open(it.impath) as im:
            expect = (np.asarray(im.convert("RGB"), np.float32).mean(-1) / 255.0 > 0.5).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(Image.open(store.path(it.impath))), expect)
    assert s2.fg_fraction == pytest.approx(np.mean([store.read(it.impath).mean() for it in items]))
    assert store.read_manifest()["count"] == 6 and store.read_manifest()["complete"] is True

    with pytest.raises(segment.SettingsMismatchError) as e:  # another threshold: refused, nothing touched
        segment.segment_images(Brightness(), items, store, threshold=0.3, progress=False)
    assert "\n" not in str(e.value) and "threshold: 0.5 -> 0.3" in str(e.value) and "--overwrite" in str(e.value)
    other = Brightness()
    other.template = "a {}"
    with pytest.raises(segment.SettingsMismatchError, match="text_prompt_template"):
        segment.segment_images(other, items, store, threshold=0.5, progress=False)
    assert all(os.stat(store.path(p)).st_mtime_ns == t for p, t in stamps.items())
    redo = Brightness()
    s3 = segment.segment_images(redo, items, store, threshold=0.3, overwrite=True, progress=False)
    assert s3.computed == 6 and len(redo.calls) == 6 and store.read_manifest()["threshold"] == 0.3


def test_resume_refuses_a_store_without_manifest(tmp_path):
    items = _images(tmp_path, 2)
    store = MaskStore(str(tmp_path), str(tmp_path / "images"), source="imported")
    store.write(items[0].impath, np.ones((10, 12), np.uint8))
    with pytest.raises(segment.SettingsMismatchError, match="not recorded"):
        segment.segment_images(Brightness(), items, store, progress=False)


def test_multi_label_label_map():
    scores = np.zeros((2, 2, 3), np.float32)
    scores[0, 0, :] = [0.9, 0.2, 0.6]
    scores[1, 0, :] = [0.1, 0.8, 0.7]
    scores[1, 1, 2] = 0.4
    m = segment.label_map(scores, [4, 11], 0.5, multi_label=True)
    np.testing.assert_array_equal(m, [[5, 12, 12], [0, 0, 0]])  # 1 + class index of the best class
    np.testing.assert_array_equal(segment.label_map(scores, [4, 11], 0.5, multi_label=False), [[1, 1, 1], [0, 0, 0]])


def test_clipes_cli_resume_and_refusal(scenes_root, capsys):
    tool = load_tool()
    args = seg_args(scenes_root, "--backend", "clipes", "--source", "clipes_t", "--batch-size", "4")
    assert tool.main(args) == 0
    assert "9 masks in" in capsys.readouterr().out
    assert tool.main(args) == 0
    assert "(0 computed, 9 already there with the same settings)" in capsys.readouterr().out
    assert tool.main(args[:-len(SCENES)] + ["--threshold", "0.3", *SCENES]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and "threshold" in err[0]


# ------------------------------------------------------------------------------------------ CLIP-ES parts
def test_connected_boxes_and_affinity():
    b = np.zeros((6, 7), bool)
    b[1, 1] = b[2, 2] = True  # one 8-connected region -> box rows 1-2, cols 1-2
    b[4, 5] = b[5, 6] = True  # another one -> rows 4-5, cols 5-6
    expect = np.zeros((6, 7), np.float32)
    expect[1:3, 1:3] = 1
    expect[4:6, 5:7] = 1
    np.testing.assert_array_equal(segment.connected_boxes(b), expect)
    a = torch.softmax(torch.randn(2, 5, 5), dim=-1)
    t = segment.affinity_transition(a, sinkhorn_iters=50)
    s = (a / a.sum(1, keepdim=True))
    for _ in range(49):
        s = s / s.sum(2, keepdim=True)
        s = s / s.sum(1, keepdim=True)
    s = s / s.sum(2, keepdim=True)  # doubly stochastic in the limit
    s = (s + s.transpose(1, 2)) / 2
    torch.testing.assert_close(t, s @ s)
    torch.testing.assert_close(t.sum(-1), torch.ones(2, 5), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------ compare
def _store(root, source, masks):
    s = MaskStore(str(root), str(root / "images"), source=source)
    for name, m in masks.items():
        s.write(str(root / "images" / name), m)
    return s.root


def test_compare_iou_equals_hand_computation(tmp_path, capsys):
    a1 = np.zeros((8, 8), np.uint8)
    a1[0:4, 0:4] = 1  # 16 px
    b1 = np.zeros((8, 8), np.uint8)
    b1[2:6, 2:6] = 1  # 16 px, 4 shared -> IoU 4 / 28
    a2 = np.zeros((8, 8), np.uint8)
    b2 = np.zeros((8, 8), np.uint8)  # both empty -> 1
    a3 = np.ones((8, 8), np.uint8)
    b3 = np.zeros((4, 4), np.uint8)
    b3[:, :2] = 1  # half the store's 4x4 mask; nearest to 8x8 -> left half -> IoU 32 / 64
    ra = _store(tmp_path, "a", {"x/1.jpg": a1, "x/2.jpg": a2, "y/3.jpg": a3, "only_a.jpg": a1})
    rb = _store(tmp_path, "b", {"x/1.jpg": b1, "x/2.jpg": b2, "y/3.jpg": b3})
    c = segment.compare_stores(ra, rb)
    hand = (4 / 28 + 1.0 + 32 / 64) / 3
    assert c.mean_iou == pytest.approx(hand)
    assert c.fg_a == pytest.approx((16 + 0 + 64) / 64 / 3) and c.fg_b == pytest.approx((16 + 0 + 32) / 64 / 3)
    assert c.pairs[0] == ("x/1.png", pytest.approx(4 / 28)) and c.only_a == ["only_a.png"]
    tool = load_tool()
    sheet = tmp_path / "sheet.png"
    assert tool.main(["compare", ra, rb, "--sheet", str(sheet), "--worst", "2"]) == 0
    out = capsys.readouterr().out
    assert f"mean IoU {hand:.4f}" in out and "only in A: 1" in out
    img = np.asarray(Image.open(sheet))
    assert img.shape == (2 * 96 + 4, 3 * 96 + 2 * 4, 3)
    # row 1 (worst, x/1): the disagreement tile shows A-only red where a1 & ~b1
    tile = img[:96, 2 * (96 + 4):2 * (96 + 4) + 96]
    assert tuple(tile[0, 0]) == (220, 40, 40) and tuple(tile[95, 95]) == (0, 0, 0)


def test_compare_bad_store_one_line(tmp_path, capsys):
    (tmp_path / "notastore").mkdir()
    tool = load_tool()
    assert tool.main(["compare", str(tmp_path / "notastore"), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "masks/<source>" in err[0]
