"""PromptSRC, then PromptKD distilled from it, through train.py on the embedded testbed (toy CLIP),
and the results read back by tools/parse_results.py."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL = ["DATASET.SCENES.N_TRAIN", "6", "DATASET.SCENES.N_TEST", "6", "DATASET.SCENES.N_VAL", "2",
         "OPTIM.MAX_EPOCH", "2", "TRAIN.PRINT_FREQ", "100", "VERBOSE", "False"]


def train_py(tmp_path, trainer, cfg, out, *extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", DAPT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(REPO / "train.py"), "--seed", "1", "--trainer", trainer,
           "--dataset-config-file", "configs/datasets/objects_on_scenes.yaml",
           "--config-file", f"configs/trainers/{cfg}/toy_scenes.yaml", "--output-dir", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)


@pytest.mark.slow
def test_promptsrc_then_promptkd_through_train_py(tmp_path):
    root = ["DATASET.ROOT", str(tmp_path / "data")]
    src = tmp_path / "out" / "base2new" / "train_base" / "scenes" / "shots_16" / "PromptSRC" / "toy" / "seed1"
    r = train_py(tmp_path, "PromptSRC", "PromptSRC", src, *SMALL, *root, "TRAINER.PROMPTSRC.GPA_MEAN", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    log = (src / "log.txt").read_text()
    assert "GPA: using the Gaussian-weighted prompts" in log and "* accuracy:" in log
    ckpt = src / "VLPromptLearner" / "model.pth.tar-2"
    assert ckpt.is_file()

    kd_common = root + ["TRAINER.PROMPTKD.TEACHER_CKPT", str(ckpt)]
    kd = tmp_path / "out" / "base2new" / "train_base" / "scenes" / "shots_0" / "PromptKD" / "toy" / "seed_1"
    r = train_py(tmp_path, "PromptKD", "PromptKD", kd, *SMALL, *kd_common)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (kd / "log.txt").read_text()
    assert "transductive" in log and f"Loaded the PromptKD teacher from {ckpt}" in log
    assert (kd / "VLPromptLearner" / "model.pth.tar-2").is_file()
    # the base classes' accuracy of the saved student, as scripts/promptkd/base2new_test.sh runs it
    base = tmp_path / "out" / "base2new" / "test_base" / "scenes" / "shots_0" / "PromptKD" / "toy" / "seed_1"
    r = train_py(tmp_path, "PromptKD", "PromptKD", base, "--model-dir", str(kd), "--eval-only", *SMALL,
                 *kd_common, "DATASET.SUBSAMPLE_CLASSES", "base")
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, str(REPO / "tools" / "parse_results.py"), "--base",
                        str(tmp_path / "out" / "base2new" / "test_base"), "--new",
                        str(tmp_path / "out" / "base2new" / "train_base" / "scenes" / "shots_0")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "HM" in r.stdout and "(1 / 1 run)" in r.stdout, r.stdout + r.stderr

    # a missing teacher file is one clear line and a non-zero exit
    r = train_py(tmp_path, "PromptKD", "PromptKD", tmp_path / "bad", *SMALL, *root,
                 "TRAINER.PROMPTKD.TEACHER_CKPT", str(tmp_path / "missing.pth.tar"))
    assert r.returncode == 2 and "TEACHER_CKPT" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_dapt_promptsrc_teacher_then_promptkd_through_train_py(tmp_path):
    """DAPT+PromptKD on the testbed: a DAPT+PromptSRC teacher (DAPT-S on the testbed's exact masks),
    a PromptKD student distilled from its checkpoint; --mode with PromptKD is one clear line."""
    root = ["DATASET.ROOT", str(tmp_path / "data")]
    src = tmp_path / "out" / "dapt_src"
    r = train_py(tmp_path, "PromptSRC", "PromptSRC", src, "--mode", "dapt-s", *SMALL, *root,
                 "TRAINER.PROMPTSRC.GPA_MEAN", "2", "DATASET.SUBSAMPLE_CLASSES", "base")
    assert r.returncode == 0, r.stderr[-3000:]
    log = (src / "log.txt").read_text()
    assert "DAPT enabled: masks precomputed (gt)" in log and "GPA: using the Gaussian-weighted prompts" in log
    for term in ("loss_scl_text", "loss_scl_kl", "loss_fg", "loss_bg", "loss_triplet"):
        assert term in log, term
    ckpt = src / "VLPromptLearner" / "model.pth.tar-2"
    assert ckpt.is_file()

    kd = tmp_path / "out" / "kd"
    teacher = ["TRAINER.PROMPTKD.TEACHER_CKPT", str(ckpt)]
    r = train_py(tmp_path, "PromptKD", "PromptKD", kd, *SMALL, *root, *teacher)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (kd / "log.txt").read_text()
    assert f"Loaded the PromptKD teacher from {ckpt}" in log and "* accuracy:" in log
    assert "DAPT enabled" not in log  # the student is unchanged
    assert (kd / "VLPromptLearner" / "model.pth.tar-2").is_file()

    r = train_py(tmp_path, "PromptKD", "PromptKD", tmp_path / "out" / "kd_mode", "--mode", "dapt-s", *SMALL, *root,
                 *teacher)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "--mode" in lines[0] and "teacher" in lines[0], r.stderr
    assert not (tmp_path / "out" / "kd_mode" / "VLPromptLearner").exists()


@pytest.mark.parametrize("subsample", ["base", "new"])
def test_promptkd_base2novel_tests_the_correlated_set_of_the_same_classes(tmp_path, monkeypatch, subsample):
    """PromptKD's transductive data path keeps the testbed's correlated test set, restricted and
    relabelled exactly like its test split (base or novel classes)."""
    from types import SimpleNamespace

    from dapt.config import get_cfg_default, merge_from_file, merge_from_list
    from dapt.data.synthetic import scenes
    from dapt.trainers.promptkd import PromptKD

    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "cache"))
    cfg = get_cfg_default()
    merge_from_file(cfg, str(REPO / "configs/datasets/objects_on_scenes.yaml"))
    merge_from_file(cfg, str(REPO / "configs/trainers/PromptKD/toy_scenes.yaml"))
    merge_from_list(cfg, ["DATASET.SCENES.N_TRAIN", "2", "DATASET.SCENES.N_VAL", "1", "DATASET.SCENES.N_TEST", "3",
                          "DATASET.SUBSAMPLE_CLASSES", subsample])
    cfg.freeze()
    dm = PromptKD.build_data_loader(SimpleNamespace(cfg=cfg))
    corr, test = dm.dataset.extra_tests["correlated"], dm.dataset.test
    names = scenes.OBJECTS[:5] if subsample == "base" else scenes.OBJECTS[5:]
    for items in (corr, test):
        assert len(items) == 5 * 3
        assert {d.classname for d in items} == set(names)
        assert all(names[d.label] == d.classname for d in items)
    assert all("test_correlated_" in os.path.basename(d.impath) for d in corr)
    assert set(dm.extra_test_loaders) == {"correlated"}
