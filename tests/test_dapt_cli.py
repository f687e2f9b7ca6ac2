"""DAPT-S and DAPT-G through train.py (--mode): on the synthetic ObjectsOnScenes data (its exact
ground-truth masks as the precomputed masks), and on a miniature Oxford-Pets layout."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dapt.decouple.masks import MaskStore

REPO = Path(__file__).resolve().parents[1]
NAMES = ["abyssinian", "bengal", "pug"]
COLORS = [(230, 30, 30), (30, 200, 30), (40, 40, 230)]


@pytest.fixture(scope="module")
def pets_root(tmp_path_factory):
    """oxford_pets/{images,split_zhou_OxfordPets.json}: a coloured object per class on a textured
    background, and its exact mask in masks/gt."""
    root = tmp_path_factory.mktemp("data")
    ddir = root / "oxford_pets"
    img_dir = ddir / "images"
    img_dir.mkdir(parents=True)
    store = MaskStore(str(ddir), str(img_dir), source="gt")
    rng = np.random.default_rng(0)
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(NAMES):
        for key, n in (("train", 4), ("val", 1), ("test", 2)):
            for i in range(n):
                arr = rng.integers(60, 140, (72, 88, 3)).astype(np.uint8)
                h, w = rng.integers(24, 40), rng.integers(24, 44)
                y0, x0 = rng.integers(0, 72 - h), rng.integers(0, 88 - w)
                yy, xx = np.mgrid[:72, :88]
                obj = ((yy - y0 - h / 2) / (h / 2)) ** 2 + ((xx - x0 - w / 2) / (w / 2)) ** 2 <= 1  # an ellipse
                arr[obj] = COLORS[label]
                rel = f"{name.title()}_{key}{i}.jpg"
                Image.fromarray(arr).save(img_dir / rel, quality=95)
                store.write(str(img_dir / rel), obj.astype(np.uint8))
                split[key].append([rel, label, name])
    (ddir / "split_zhou_OxfordPets.json").write_text(json.dumps(split))
    return root


def run_train(root, out, mode, *extra):
    cmd = [sys.executable, str(REPO / "train.py"), "--root", str(root), "--seed", "1", "--trainer", "MaPLe",
           "--mode", mode, "--dataset-config-file", str(REPO / "configs/datasets/oxford_pets.yaml"),
           "--config-file", str(REPO / "configs/trainers/MaPLe/dapt_vit_b16_t.yaml"), "--output-dir", str(out),
           "MODEL.BACKBONE.NAME", "dapt-tiny-vit", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(64, 64)",
           "OPTIM.MAX_EPOCH", "2", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8",
           "DATASET.NUM_SHOTS", "4", "TRAINER.MAPLE.PROMPT_DEPTH", "3", "TRAINER.MAPLE.PREC", "fp32",
           "TRAIN.PRINT_FREQ", "1", "DAPT.MASK.STORE", "gt", "DAPT.CAM.BATCH_SIZE", "5", *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return (Path(out) / "log.txt").read_text()


SCENES = ["DATASET.SCENES.N_TRAIN", "3", "DATASET.SCENES.N_VAL", "1", "DATASET.SCENES.N_TEST", "2",
          "DATASET.SCENES.NUM_CLASSES", "4"]


@pytest.mark.parametrize("mode", ["dapt-s", "dapt-g"])
def test_train_py_objects_on_scenes(tmp_path_factory, tmp_path, mode):
    root = tmp_path_factory.getbasetemp() / "scenes"
    cmd = [sys.executable, str(REPO / "train.py"), "--root", str(root), "--seed", "1", "--trainer", "MaPLe",
           "--mode", mode, "--dataset-config-file", str(REPO / "configs/datasets/objects_on_scenes.yaml"),
           "--config-file", str(REPO / "configs/trainers/MaPLe/dapt_vit_b16_base.yaml"), "--output-dir", str(tmp_path),
           "MODEL.BACKBONE.NAME", "dapt-tiny-vit", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(64, 64)",
           "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0", "TRAINER.MAPLE.PREC", "fp32",
           "TRAINER.MAPLE.PROMPT_DEPTH", "3", "DAPT.MASK.STORE", "gt", *SCENES]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / "log.txt").read_text()
    assert "weights cls 1.00 v 0.40 f 0.40 b 0.50" in log  # setting III
    assert "loss_triplet" in log and "Finish training" in log
    fg = float(re.findall(r"mean foreground fraction of the training masks ([0-9.]+)", log)[-1])
    assert 0.0 < fg < 1.0


@pytest.mark.parametrize("mode", ["dapt-s", "dapt-g"])
def test_train_py_runs_dapt(pets_root, tmp_path, mode):
    log = run_train(pets_root, tmp_path / mode, mode)
    assert "Finish training" in log and "accuracy" in log
    step = [ln for ln in log.splitlines() if "loss_triplet" in ln]
    assert step, log[-2000:]
    for term in ("loss_cls", "loss_fg", "loss_bg", "loss_triplet"):
        assert term in step[-1]
    fg = [float(x) for x in re.findall(r"mean foreground fraction of the training masks ([0-9.]+)", log)]
    assert len(fg) == 2 and all(0.0 < f < 1.0 for f in fg)
    if mode == "dapt-g":
        assert log.count("Grad-CAM masks of 12 images refreshed") == 2
    assert list((tmp_path / mode / "tensorboard").glob("events.*"))


def test_train_py_missing_masks_one_line_error(pets_root, tmp_path):
    cmd = [sys.executable, str(REPO / "train.py"), "--root", str(pets_root), "--trainer", "MaPLe", "--mode", "dapt-s",
           "--dataset-config-file", str(REPO / "configs/datasets/oxford_pets.yaml"),
           "--config-file", str(REPO / "configs/trainers/MaPLe/dapt_vit_b16_t.yaml"), "--output-dir", str(tmp_path),
           "MODEL.BACKBONE.NAME", "dapt-tiny-vit", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(64, 64)",
           "DATALOADER.NUM_WORKERS", "0", "DAPT.MASK.STORE", "seem"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()[-1]
    assert "have no mask" in err and "masks/seem/" in err and "DAPT.MASK.MISSING" in err
