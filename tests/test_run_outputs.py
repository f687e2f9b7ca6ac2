"""What a run leaves and says: curves.png / curves.json hold the per-epoch means of the values
tensorboard got; the start-up log lists only the keys that differ from the defaults (the full
config is in config.yaml); NUM_WORKERS above the CPU count is capped with one line."""
import json
import os
import re
from collections import defaultdict

import numpy as np
from PIL import Image

from dapt.config import get_cfg_default, merge_from_file, merge_from_list
from dapt.engine.build import build_trainer
from engine_fixtures import make_dm
from test_engine import cfg_for


def tensorboard_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_curves_hold_the_epoch_means_of_the_tensorboard_values(tiny_name, tmp_path):
    from dapt.utils.misc import set_random_seed

    cfg = cfg_for(tiny_name, tmp_path / "run", **{"OPTIM.MAX_EPOCH": 3, "TRAIN.CHECKPOINT_FREQ": 0})
    set_random_seed(1)
    dm = make_dm(batch_size=8, n_train=8)
    steps = len(dm.train_loader_x)
    trainer = build_trainer(cfg, dm=dm)
    trainer.train()
    curves = json.loads((tmp_path / "run" / "curves.json").read_text())
    tb = tensorboard_scalars(tmp_path / "run" / "tensorboard")
    assert {"train/loss", "train/acc", "train/lr"} <= set(curves)
    for tag in ("train/loss", "train/acc", "train/lr"):
        per_epoch = defaultdict(list)
        for step, value in tb[tag]:
            per_epoch[step // steps + 1].append(value)
        want = [(e, float(np.mean(v))) for e, v in sorted(per_epoch.items())]
        got = [(e, v) for e, v in curves[tag]]
        assert [e for e, _ in got] == [1, 2, 3] and len(tb[tag]) == 3 * steps
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-5, err_msg=tag)
    # warm-up epoch at the constant 1e-5, then the cosine schedule from OPTIM.LR
    assert curves["train/lr"][0][1] == cfg.OPTIM.WARMUP_CONS_LR
    assert curves["train/lr"][1][1] == cfg.OPTIM.LR
    # three panels (loss, accuracy, learning rate) side by side, as curves_plot lays them out
    w, h = Image.open(tmp_path / "run" / "curves.png").size
    assert (w, h) == (1260, 340)
    assert not [p for p in os.listdir(tmp_path / "run") if p.endswith(".tmp")]


def test_redraw_draws_at_most_once_per_interval_and_at_the_end():
    from dapt.utils.plots import Redraw

    now = [100.0]
    r = Redraw(interval=60, clock=lambda: now[0])
    draws = []
    for t in (110, 150, 161, 170, 230, 240):  # new numbers at these times
        now[0] = t
        if r.due():
            draws.append(t)
    assert draws == [161, 230]  # 61 s after the start, then 69 s after that draw
    now[0] = 250
    assert r.due(final=True) and not r.due(final=True)  # the numbers of t=240 are drawn once at the end
    assert not Redraw(interval=60, clock=lambda: now[0]).due(final=True)  # nothing new: nothing to draw


def test_curves_png_is_drawn_once_for_a_short_run_and_every_epoch_with_no_interval(tiny_name, tmp_path, monkeypatch):
    import dapt.utils.plots as plots

    calls = []
    real = plots.curves_plot

    def counting(path, history, title=""):
        calls.append({k: list(v) for k, v in history.items()})
        real(path, history, title)

    monkeypatch.setattr(plots, "curves_plot", counting)
    for interval, want in ((3600.0, 1), (0.0, 3)):
        calls.clear()
        monkeypatch.setattr(plots.Redraw, "INTERVAL", interval)
        out = tmp_path / f"run{want}"
        cfg = cfg_for(tiny_name, out, **{"OPTIM.MAX_EPOCH": 3, "TRAIN.CHECKPOINT_FREQ": 0})
        build_trainer(cfg, dm=make_dm(batch_size=8, n_train=8)).train()
        assert len(calls) == want, interval
        assert [e for e, _ in calls[-1]["train/loss"]] == [1, 2, 3]  # the last drawing shows every epoch
        saved = json.loads((out / "curves.json").read_text())
        assert {k: [tuple(p) for p in v] for k, v in saved.items()} == \
            {k: [tuple(p) for p in v] for k, v in calls[-1].items()}
        assert (out / "curves.png").is_file()


def test_start_log_lists_only_changed_keys_and_caps_workers(tmp_path, monkeypatch):
    from dapt.launch import available_cpus, evaluate

    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the configs come from the shipped ones
    cfg = get_cfg_default()
    merge_from_file(cfg, "configs/datasets/objects_on_scenes.yaml")
    merge_from_file(cfg, "configs/trainers/MaPLe/toy_scenes.yaml")
    merge_from_list(cfg, ["TRAINER.NAME", "ZeroshotCLIP", "OUTPUT_DIR", str(tmp_path / "zs"),
                          "DATALOADER.NUM_WORKERS", "64", "OPTIM.MAX_EPOCH", "3", "DATASET.SCENES.N_TEST", "2",
                          "DATASET.SCENES.N_TRAIN", "2", "DATASET.SCENES.N_VAL", "1"])
    cfg.freeze()
    evaluate(cfg, console=False)
    log = (tmp_path / "zs" / "log.txt").read_text()
    cpus = available_cpus()
    assert log.count("DATALOADER.NUM_WORKERS 64 > ") == 1
    assert f"DATALOADER.NUM_WORKERS 64 > {cpus} available CPUs: using {cpus}" in log
    assert "** Config **" not in log and "OPTIM_SELECTION" not in log  # no full dump
    saved = (tmp_path / "zs" / "config.yaml").read_text()
    assert "OPTIM_SELECTION" in saved and f"NUM_WORKERS: {cpus}" in saved  # the full config is in the run folder
    block = re.search(r"(\d+) keys differ from the defaults:\n((?:  .*\n)+)", log)
    assert block, log[:2000]
    listed = dict(line.strip().split(": ", 1) for line in block.group(2).splitlines())
    assert int(block.group(1)) == len(listed)
    assert listed["TRAINER.NAME"] == "'ZeroshotCLIP'" and listed["OPTIM.MAX_EPOCH"] == "3"
    assert listed["MODEL.BACKBONE.NAME"] == "'dapt-tiny-vit'" and listed["DATASET.NAME"] == "'ObjectsOnScenes'"
    assert listed["DATALOADER.NUM_WORKERS"] == str(cpus)
    # keys left at their defaults are not listed (the toy config does not touch these)
    for key in ("OPTIM.MOMENTUM", "OPTIM_SELECTION.LR", "TEST.EVALUATOR", "DAPT.ENABLED"):
        assert key not in listed
    assert len(listed) < 40
