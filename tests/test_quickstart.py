"""A quickstart-sized run (the README's first command, one epoch) completes and prints its table."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_runs_and_prints_table(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", DAPT_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "qs"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "quickstart.py"), "--epochs", "1", "--output-dir", str(out)],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    found = re.findall(r"^\| (zero-shot CLIP|MaPLe|MaPLe\+DAPT-G|MaPLe\+DAPT-S) \| ([\d.]+)% \| ([\d.]+)% \| ([-+\d.]+) \| "
                       r"([\d.]+|–) \|$", r.stdout, re.M)
    rows = {name: acc for name, acc, _, _, _ in found}
    assert set(rows) == {"zero-shot CLIP", "MaPLe", "MaPLe+DAPT-G", "MaPLe+DAPT-S"}
    for name, acc, corr, gap, _ in found:  # the gap is correlated - decorrelated, as printed
        assert float(gap) == pytest.approx(float(corr) - float(acc), abs=0.11)
    # the shipped toy CLIP recognises the objects zero-shot well above chance (10 classes)
    assert float(rows["zero-shot CLIP"]) > 40.0
    # every trained run left a Dassl-named checkpoint and a log with the result line
    for name in ("MaPLe", "MaPLe_DAPT-G", "MaPLe_DAPT-S"):
        run_dir = out / "p0.9_all" / name / "seed1"
        assert (run_dir / "MultiModalPromptLearner" / "model.pth.tar-1").is_file()
        assert "* accuracy:" in (run_dir / "log.txt").read_text()
    # one bar over the runs, with the current run's name and an ETA; the table as markdown and a bar plot
    assert "quickstart: MaPLe+DAPT-S" in r.stderr and "4/4 runs" in r.stderr and "ETA" in r.stderr
    md = (out / "results.md").read_text()
    for name, acc in rows.items():
        assert f"| {name} | {acc}% |" in md
        log = (out / "p0.9_all" / name.replace("+", "_").replace(" ", "_") / "seed1" / "log.txt").read_text()
        assert f"* accuracy: {acc}%" in log
    assert md.count("python train.py") == 4 and md.count("OPTIM.MAX_EPOCH 1") == 4  # the runs as they ran
    from PIL import Image

    assert Image.open(out / "results.png").size == (640, 400)
    # outputs are never overwritten: a second run into the same folder is refused
    r2 = subprocess.run([sys.executable, str(REPO / "tools" / "quickstart.py"), "--output-dir", str(out)],
                        capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert r2.returncode == 2 and "not empty" in r2.stderr
