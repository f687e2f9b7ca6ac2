import statistics
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "parse_results.py"


def write_log(d: Path, accs):
    d.mkdir(parents=True)
    lines = ["epoch [1/2] batch [1/1] loss 1.0"]
    for a in accs:  # the final test is the last result block
        lines += ["=> result", "* total: 100", f"* accuracy: {a}%", f"* error: {100 - a}%", "* macro_f1: 50.0%"]
    (d / "log.txt").write_text("\n".join(lines) + "\n")


def test_mean_std_over_seeds(tmp_path):
    write_log(tmp_path / "seed1", [10.0, 70.0])
    write_log(tmp_path / "seed2", [72.5])
    write_log(tmp_path / "seed3", [74.0])
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    mean, std = statistics.mean([70.0, 72.5, 74.0]), statistics.stdev([70.0, 72.5, 74.0])
    assert f"{mean:.2f}% +- {std:.2f}%" in r.stdout and "over 3 runs" in r.stdout


def test_base_new_hm(tmp_path):
    write_log(tmp_path / "base" / "seed1", [80.0])
    write_log(tmp_path / "new" / "seed1", [60.0])
    r = subprocess.run([sys.executable, str(TOOL), "--base", str(tmp_path / "base"), "--new", str(tmp_path / "new")],
                       capture_output=True, text=True)
    assert f"HM {2 * 80 * 60 / 140:.2f}%" in r.stdout


def test_missing_results_fail(tmp_path):
    (tmp_path / "seed1").mkdir()
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "no log.txt" in r.stderr
