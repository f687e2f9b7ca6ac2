"""tools/scenes_experiment.py: the default grid and the hypothesis runs it expands (each hypothesis
changes one thing against DAPT-G), its options, and a tiny experiment end to end whose results.json
and results.md equal what the runs' own logs say."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dapt.config import flatten
from dapt.tools import sweep
from dapt.tools.scenes_experiment import GRID_SPEC, HYPOTHESES_SPEC, build_parser, build_spec, main
from dapt.utils.plots import COLOURS

REPO = Path(__file__).resolve().parents[1]
DEGRADE_KEYS = ["DAPT.MASK.DEGRADE", "DAPT.MASK.DEGRADE_PX"]


def expand_tool(argv, out="out"):
    """The spec and jobs the tool would run with these options."""
    args = build_parser().parse_args(["--out", out] + argv)
    spec_file = HYPOTHESES_SPEC if args.hypotheses else GRID_SPEC
    data = build_spec(args, sweep.load_spec(str(REPO / spec_file)).data, spec_file)
    sweep.check_spec("spec.yaml", data)
    jobs, notes = sweep.expand(sweep.Spec("spec.yaml", data), out)
    return data, jobs, notes


def flat_cfg(step):
    return flatten(yaml.safe_load(sweep.build_cfg(step.argv).dump()))


def test_default_grid():
    data, jobs, notes = expand_tool([])
    degrade = not sweep.missing_keys({"requires_keys": DEGRADE_KEYS})  # the degraded-mask keys exist
    methods = ["CLIP", "MaPLe", "MaPLe+DAPT-G", "MaPLe+DAPT-S", "MaPLe+DAPT-S-erase0.3"] + \
        (["MaPLe+DAPT-S-dilate3", "MaPLe+DAPT-S-erode3"] if degrade else [])
    assert sorted({j.method for j in jobs}) == sorted(methods)
    assert len(notes) == (0 if degrade else 2) and all("DAPT.MASK.DEGRADE" in n for n in notes)
    few = [j for j in jobs if "few_shot" in Path(j.steps[0].output_dir).parts]
    b2n = [j for j in jobs if j not in few]
    assert len(few) == len(b2n) == 3 * 3 * len(methods)  # p x seeds x methods
    assert all(len(j.steps) == 2 for j in b2n) and all(len(j.steps) == 1 for j in few)
    seen = {}
    for j in jobs:
        cfg = sweep.build_cfg(j.steps[0].argv)
        seen.setdefault(j.method, set()).add((cfg.DATASET.SCENES.P, cfg.SEED, cfg.DATASET.NUM_SHOTS,
                                              cfg.DATASET.SUBSAMPLE_CLASSES))
        if cfg.SEED != 1 or cfg.DATASET.SCENES.P != 0.95:
            continue
        d = cfg.DAPT
        assert cfg.TRAINER.NAME == ("ZeroshotCLIP" if j.method == "CLIP" else "MaPLe")
        assert d.ENABLED == ("DAPT" in j.method)
        if d.ENABLED:
            assert d.MASK.SOURCE == ("gradcam" if j.method == "MaPLe+DAPT-G" else "precomputed")
            assert d.MASK.STORE == "gt"
            assert (d.ERASE.RATE, tuple(d.ERASE.CELLS)) == ((0.3, (4, 8)) if "erase" in j.method else (0.0, (16, 32)))
            degraded = {"MaPLe+DAPT-S-dilate3": "dilate", "MaPLe+DAPT-S-erode3": "erode"}
            if j.method in degraded:
                assert (d.MASK.DEGRADE, d.MASK.DEGRADE_PX) == (degraded[j.method], 3)
    grid = {(p, s, n, sub) for p in (0.5, 0.8, 0.95) for s in (1, 2, 3) for n, sub in ((8, "all"), (16, "base"))}
    assert all(v == grid for v in seen.values())
    # PromptSRC / PromptKD only on request; a student brings its teacher
    data, jobs, _ = expand_tool(["--methods", "PromptKD", "--protocols", "few_shot", "--seeds", "1", "--p", "0.8"])
    assert [j.name for j in jobs] == ["PromptSRC/scenes_p0.8/8shots/seed1 + PromptKD"]
    assert [r["method"] for r in data["table"]["rows"]] == ["PromptSRC", "PromptKD"]


def test_hypotheses_change_one_thing_against_dapt_g_and_reuse_the_grids_runs():
    data, jobs, notes = expand_tool(["--hypotheses"])
    assert not notes and len(jobs) == 7 * 3 and data["setting"] == ["few_shot"]
    cfgs = {j.method: flat_cfg(j.steps[0]) for j in jobs if j.name.endswith("seed1")}
    ref = cfgs["MaPLe+DAPT-G"]
    assert ref["DATASET.SCENES.P"] == 0.95 and ref["DATASET.NUM_SHOTS"] == 8 and ref["DAPT.MASK.SOURCE"] == "gradcam"

    def changed(method):
        c = cfgs[method]
        return {k for k in set(c) | set(ref) if c.get(k) != ref.get(k)} - {"OUTPUT_DIR"}

    assert {m: changed(m) for m in cfgs if m != "MaPLe+DAPT-G"} == {
        "MaPLe": {"DAPT.ENABLED", "DAPT.MASK.SOURCE"},
        "MaPLe+DAPT-S": {"DAPT.MASK.SOURCE"},  # DAPT-G with the ground-truth masks swapped in
        "MaPLe+DAPT-G-Lv-only": {"DAPT.LOSS.USE_F", "DAPT.LOSS.USE_B"},
        "MaPLe+DAPT-G-Lf-only": {"DAPT.LOSS.USE_V", "DAPT.LOSS.USE_B"},
        "MaPLe+DAPT-G-Lb-only": {"DAPT.LOSS.USE_V", "DAPT.LOSS.USE_F"},
        "MaPLe+DAPT-G-epoch-switch": {"DAPT.LOSS.SCHEDULE", "DAPT.LOSS.SWITCH_EPOCH"}}
    assert cfgs["MaPLe+DAPT-S"]["DAPT.MASK.STORE"] == "gt"
    for m in ("Lv", "Lf", "Lb"):
        c = cfgs[f"MaPLe+DAPT-G-{m}-only"]
        assert [c[f"DAPT.LOSS.USE_{t}"] for t in "VFB"] == [t == m[1].upper() for t in "VFB"]
    sw = cfgs["MaPLe+DAPT-G-epoch-switch"]
    # L_v alone until the switch, L_f + L_b after it: both phases get epochs after the warm-up
    assert sw["DAPT.LOSS.SCHEDULE"] == "epoch_switch"
    assert sw["OPTIM.WARMUP_EPOCH"] <= sw["DAPT.LOSS.SWITCH_EPOCH"] < sw["OPTIM.MAX_EPOCH"] - 1
    # into the grid's folder, the runs it shares with the grid are the grid's (same folder, same command)
    _, grid, _ = expand_tool(["--protocols", "few_shot", "--p", "0.95"])
    grid_steps = {s.output_dir: s.argv for j in grid for s in j.steps}
    shared = [s for j in jobs for s in j.steps if s.output_dir in grid_steps]
    assert len(shared) == 9 and all(grid_steps[s.output_dir] == s.argv for s in shared)


@pytest.mark.parametrize("argv, msg", [
    (["--hypotheses", "--protocols", "base2new"], "--protocols base2new: configs/sweeps/scenes_hypotheses.yaml runs "
                                                  "only few_shot"),
    (["--methods", "MaPLe", "Nobody"], "--methods Nobody: not in configs/sweeps/scenes.yaml"),
    (["--p", "0.5", "1.5"], "--p 1.5: p is a probability"),
    (["--opts", "OPTIM.LR"], "--opts OPTIM.LR: KEY VALUE pairs expected"),
])
def test_bad_options_are_one_line(argv, msg, tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--dry-run"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def logged(run_dir: Path, key: str):
    """The last '* <key>: X%' of the final test block, read by hand (None when not logged)."""
    text = "\n".join(p.read_text() for p in sorted(run_dir.glob("log.txt*")))
    tail = text.rsplit("Evaluate on the *test* set", 1)[1]
    found = re.findall(rf"^\* {key}: ([\d.]+)%", tail, re.M)
    return float(found[-1]) if found else None


@pytest.mark.slow
def test_tiny_experiment_end_to_end(tmp_path):
    """1 p, 1 seed, zero-shot CLIP and MaPLe, few-shot, 1 epoch on a tiny world (about 45 s on 2 cores)."""
    out = tmp_path / "out"
    env = dict(os.environ, DAPT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(REPO / "tools" / "scenes_experiment.py"), "--out", str(out), "--p", "0.9",
           "--seeds", "1", "--methods", "CLIP", "MaPLe", "--protocols", "few_shot", "--shots", "2", "--epochs", "1",
           "--opts", "DATASET.SCENES.N_TRAIN", "4", "DATASET.SCENES.N_VAL", "2", "DATASET.SCENES.N_TEST", "10",
           "DATASET.SCENES.NUM_CLASSES", "4", "OPTIM.WARMUP_EPOCH", "0"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"total wall time \d+ s", r.stdout)
    for name in ("results.md", "results.json", "accuracy_vs_p.png", "sweep_spec.yaml", "wall_time.json"):
        assert (out / name).is_file(), name

    records = json.loads((out / "results.json").read_text())
    assert sorted(rec["method"] for rec in records) == ["CLIP", "MaPLe"]
    md = (out / "results.md").read_text()
    for rec in records:
        run_dir = out / rec["folder"]
        assert run_dir.parts[-6:] == ("few_shot", "scenes_p0.9", rec["method"], "toy_scenes", "2shots", "seed1")
        acc, corr = logged(run_dir, "accuracy"), logged(run_dir, "correlated_accuracy")
        assert acc is not None and rec["accuracy"] == acc and rec["correlated_accuracy"] == corr
        assert rec["gap"] == (None if corr is None else pytest.approx(corr - acc))
        assert (rec["protocol"], rec["split"], rec["p"], rec["seed"], rec["shots"], rec["mask_iou"]) == \
            ("few_shot", "", 0.9, 1, 2, None)
        label = "zero-shot CLIP" if rec["method"] == "CLIP" else "MaPLe"
        corr_txt = "–" if corr is None else f"{corr:.1f}"
        gap_txt = "–" if corr is None else f"{corr - acc:.1f}"
        assert f"| {label} | ours | {acc:.1f} | {corr_txt} | {gap_txt} |" in md  # one seed: no std
    wall = json.loads((out / "wall_time.json").read_text())
    assert len(wall) == 1 and wall[0]["jobs_ran"] == 2
    assert f"Wall time: {wall[0]['seconds']:.0f} s for this invocation (2 jobs ran, 0 already done" in md
    px = np.asarray(Image.open(out / "accuracy_vs_p.png").convert("RGB")).reshape(-1, 3)
    for colour in COLOURS[:2]:  # a point (and error bar) per method
        assert (px == np.array(colour)).all(axis=1).sum() > 20

    # rerun: both runs are reused, the results are the same, the wall time adds up
    r2 = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0 and "0 ran now, 2 skipped" in r2.stdout, r2.stdout + r2.stderr
    assert json.loads((out / "results.json").read_text()) == records
    wall2 = json.loads((out / "wall_time.json").read_text())
    assert len(wall2) == 2 and wall2[1]["jobs_skipped"] == 2
    total = wall2[0]["seconds"] + wall2[1]["seconds"]
    assert f"{total:.0f} s over every invocation into {out}" in (out / "results.md").read_text()


def test_hypotheses_report_from_finished_runs(tmp_path, capsys):
    """Runs already in the folder (config.yaml as the spec builds it, a final test block and, for DAPT,
    mask_quality.json) are reused, not rerun; hypotheses.md / .json hold exactly their numbers."""
    import statistics

    out = tmp_path / "out"
    _, jobs, _ = expand_tool(["--hypotheses", "--seeds", "1", "2"], str(out))
    planted = {}
    for k, job in enumerate(jobs):
        step = job.steps[0]
        d = Path(sweep._abs_dir(step.output_dir))
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(sweep.build_cfg(step.argv).dump())
        seed = int(d.name[len("seed"):])
        acc, corr = 50.0 + k, 60.0 + 2 * k + seed
        iou = round(0.1 * seed + 0.01 * k, 4) if "DAPT" in job.method else None
        (d / "log.txt").write_text(f"Evaluate on the *test* set\n=> result\n* total: 100\n* correct: 1\n"
                                   f"* accuracy: {acc}%\n* error: 1.0%\n* macro_f1: 1.0%\n"
                                   f"* correlated_accuracy: {corr}%\n")
        if iou is not None:
            (d / "mask_quality.json").write_text(json.dumps([
                {"epoch": 2, "iou": iou, "fg_fraction": 0.1, "gt_fg_fraction": 0.2, "source": "x"},
                {"epoch": 1, "iou": 0.99, "fg_fraction": 0.1, "gt_fg_fraction": 0.2, "source": "x"}]))
        planted.setdefault(job.method, []).append((acc, corr, iou))
    assert main(["--hypotheses", "--seeds", "1", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0 ran now, 14 skipped" in printed and not (out / "results.md").exists()
    records = json.loads((out / "hypotheses.json").read_text())
    assert len(records) == 14
    for rec in records:
        acc, corr, iou = next(v for v in planted[rec["method"]] if v[0] == rec["accuracy"])
        assert (rec["correlated_accuracy"], rec["gap"], rec["mask_iou"]) == (corr, corr - acc, iou)
    md = (out / "hypotheses.md").read_text()
    labels = {"MaPLe+DAPT-G-Lf-only": "DAPT-G, L_f alone", "MaPLe": "MaPLe"}
    for method, label in labels.items():
        accs, corrs, ious = zip(*planted[method])
        gaps = [c - a for a, c in zip(accs, corrs)]
        cells = [f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" for v in (accs, corrs, gaps)]
        cells.append("–" if method == "MaPLe" else f"{statistics.mean(ious):.2f} ± {statistics.stdev(ious):.2f}")
        assert f"| {label} | ours | {' | '.join(cells)} |" in md
    assert "Wall time: " in md and "2 seeds (1, 2)" in md and "–: not logged by these runs" in md
