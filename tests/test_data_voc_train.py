"""End to end: train.py trains CoOp on a miniature VOC 2012 (multi-label, base classes) and reports mAP."""
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import data_fixtures as fx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_train_py_voc_base_reports_map(tmp_path):
    fx.make_voc(str(tmp_path / "data"))
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "train.py"), "--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "CoOp",
           "--dataset-config-file", str(REPO / "configs/datasets/pascal_voc.yaml"),
           "--config-file", str(REPO / "configs/trainers/CoOp/vit_b16.yaml"), "--output-dir", str(out),
           "MODEL.BACKBONE.NAME", "dapt-tiny-vit", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(64, 64)",
           "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0", "DATASET.NUM_SHOTS", "2",
           "DATASET.SUBSAMPLE_CLASSES", "base"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert re.search(r"# classes\s+10", log) and "multi-label" in log
    m = re.search(r"\* mAP: ([0-9.]+)%", log)
    assert m and 0.0 < float(m.group(1)) <= 100.0
    assert (tmp_path / "data" / "voc12data" / "split_fewshot" / "shot_2-seed_1.pkl").is_file()
