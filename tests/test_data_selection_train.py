"""The data-efficient setting end to end: train.py's path on the testbed (ObjectsOnScenes + the toy
CLIP) with DATASET.SELECTION_RATIO 0.5 trains on exactly the selected half and writes selection.json;
the selection equals one recomputed from the untrained model; a release YAML with the keys loads."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCENES = ["DATASET.SCENES.N_TRAIN", "6", "DATASET.SCENES.N_VAL", "1", "DATASET.SCENES.N_TEST", "2",
          "DATASET.SCENES.NUM_CLASSES", "4"]


def argv(root, out, *extra, mode=None):
    a = ["--root", str(root), "--seed", "1", "--trainer", "MaPLe",
         "--dataset-config-file", str(REPO / "configs/datasets/objects_on_scenes.yaml"),
         "--config-file", str(REPO / "configs/trainers/MaPLe/toy_scenes.yaml"), "--output-dir", str(out)]
    if mode:
        a += ["--mode", mode]
    return a + ["OPTIM.MAX_EPOCH", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATASET.SELECTION_BATCH_SIZE", "5",
                "DAPT.MASK.STORE", "gt", *SCENES, *extra]


def run_inprocess(args):
    from dapt.cli import build_parser, run, setup_cfg

    cfg = setup_cfg(build_parser().parse_args(args))
    return cfg, run(cfg, console=False)


@pytest.mark.parametrize("mode", [None, "dapt-s"])
def test_margin_selection_trains_on_exactly_the_selected_half(tmp_path_factory, tmp_path, mode):
    root = tmp_path_factory.getbasetemp() / "scenes_sel"
    out = tmp_path / "run"
    cfg, trainer = run_inprocess(argv(root, out, "DATASET.SELECTION_METHOD", "Margin", "DATASET.SELECTION_RATIO",
                                      "0.5", mode=mode))
    saved = json.loads((out / "selection.json").read_text())
    assert saved["method"] == "Margin" and saved["ratio"] == 0.5 and saved["num_train"] == 24
    assert len(saved["indices"]) == 12
    # the loader that was trained on holds exactly the selected images (also DAPT's masking loader)
    trained = [d.impath for d in trainer.dm.train_loader_x.dataset.data_source]
    assert trained == saved["impaths"] and len(trainer.dm.train_loader_x) == 3
    log = (out / "log.txt").read_text()
    assert "Data selection Margin: 12 of 24 training images" in log and "batch [3/3]" in log

    # independent recomputation: the untrained model's softmax margins on the full training split
    from dapt.data.data_manager import DataManager
    from dapt.engine.build import build_trainer
    from dapt.utils.misc import set_random_seed

    set_random_seed(1)
    fresh = build_trainer(cfg)
    data = DataManager(cfg).dataset.train_x
    fresh.model.eval()
    with torch.no_grad():
        imgs = torch.stack([fresh.dm.tfm_test(__import__("PIL.Image", fromlist=["x"]).open(d.impath).convert("RGB"))
                            for d in data])
        p = torch.softmax(fresh.model(imgs).double(), dim=1).numpy()
    top2 = np.sort(p, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    labels = np.array([d.label for d in data])
    expect = set()
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        expect |= set(members[np.argsort(margin[members], kind="stable")[:3]].tolist())
    assert set(saved["indices"]) == expect
    assert [data[i].impath for i in saved["indices"]] == saved["impaths"]


def test_uniform_selection_via_train_py_and_resume_reuses_it(tmp_path_factory, tmp_path):
    root = tmp_path_factory.getbasetemp() / "scenes_sel"
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "train.py"), *argv(root, out, "DATASET.SELECTION_RATIO", "0.5",
                                                            "DATALOADER.NUM_WORKERS", "0")]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = json.loads((out / "selection.json").read_text())
    assert len(saved["indices"]) == 12 and saved["method"] == "Uniform"
    log = (out / "log.txt").read_text()
    assert "Data selection Uniform: 12 of 24 training images" in log and "* accuracy:" in log
    # rerunning the same command into the folder (a resume) reuses the saved selection
    (out / "selection.json").write_text(json.dumps(dict(saved, indices=saved["indices"][::-1],
                                                        impaths=saved["impaths"][::-1])))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = "".join(p.read_text() for p in out.glob("log.txt*"))  # an existing log.txt is never overwritten
    assert logs.count("Reusing the data selection") == 1


def test_release_yaml_keys_load_and_bad_method_is_one_line(tmp_path):
    from dapt.config import get_cfg_default, merge_from_file

    y = tmp_path / "vit_b16_t.yaml"
    y.write_text("DATASET:\n  SELECTION_BATCH_SIZE: 50\n  SUBSAMPLE_CLASSES: all\n"
                 "OPTIM_SELECTION:\n  MAX_EPOCH: 0\n  LR: 0.0035\n")
    cfg = get_cfg_default()
    merge_from_file(cfg, str(y))
    assert cfg.DATASET.SELECTION_BATCH_SIZE == 50 and cfg.OPTIM_SELECTION.NAME == "sgd"
    r = subprocess.run([sys.executable, str(REPO / "train.py"), *argv(tmp_path / "d", tmp_path / "o",
                        "DATASET.SELECTION_METHOD", "Herding", "DATASET.SELECTION_RATIO", "0.5")],
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300)
    assert r.returncode != 0
    assert "DATASET.SELECTION_METHOD 'Herding'" in r.stderr.strip().splitlines()[-1]


def test_selection_pretraining_is_undone_before_training(tmp_path_factory, tmp_path, caplog):
    """OPTIM_SELECTION.MAX_EPOCH 1: the scoring model is pre-trained, then the prompts are restored."""
    import logging

    from dapt.cli import build_parser, setup_cfg
    from dapt.engine.selection import select_training_data
    from dapt.engine.build import build_trainer
    from dapt.utils.misc import set_random_seed

    root = tmp_path_factory.getbasetemp() / "scenes_sel"
    cfg = setup_cfg(build_parser().parse_args(argv(root, tmp_path, "DATASET.SELECTION_METHOD", "GraNd",
                                                   "DATASET.SELECTION_RATIO", "0.5", "OPTIM_SELECTION.MAX_EPOCH", "1",
                                                   "OPTIM_SELECTION.LR", "0.5", "OPTIM_SELECTION.WARMUP_EPOCH", "0")))
    set_random_seed(1)
    t = build_trainer(cfg)
    before = {k: v.clone() for k, v in t.get_model_state().items()}
    with caplog.at_level(logging.INFO, logger="dapt.engine.selection"):
        idx = select_training_data(t)
    assert "selection pre-training epoch 1/1" in caplog.text
    after = t.get_model_state()
    assert all(torch.equal(before[k], after[k]) for k in before)
    labels = np.array([d.label for d in t.dm.dataset.train_x])
    assert len(idx) == 12 and np.bincount(labels).tolist() == [3, 3, 3, 3]
    assert json.loads((tmp_path / "selection.json").read_text())["method"] == "GraNd"
    from dapt.engine.selection import _pretrain

    _pretrain(t, 1)  # the pre-training alone does move the prompts
    assert any(not torch.equal(before[k], v) for k, v in t.get_model_state().items())
