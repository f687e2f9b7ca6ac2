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


def write_cfg(d: Path, trainer: str, seed: int, shots: int = 16):
    from dapt.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.TRAINER.NAME, cfg.SEED, cfg.DATASET.NUM_SHOTS, cfg.OUTPUT_DIR = trainer, seed, shots, str(d)
    (d / "config.yaml").write_text(cfg.dump())


def test_mixed_methods_or_configs_are_refused_and_named(tmp_path):
    for seed, acc in ((1, 70.0), (2, 72.0)):
        write_log(tmp_path / f"coop_seed{seed}", [acc])
        write_cfg(tmp_path / f"coop_seed{seed}", "CoOp", seed)
    write_log(tmp_path / "maple_seed1", [80.0])
    write_cfg(tmp_path / "maple_seed1", "MaPLe", 1)
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "mixes 2 experiments" in r.stderr
    assert "method CoOp" in r.stderr and "method MaPLe" in r.stderr and "TRAINER.NAME" in r.stderr
    assert "coop_seed1, coop_seed2" in r.stderr and "maple_seed1" in r.stderr
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path), "--group", "1"], capture_output=True, text=True)
    assert r.returncode == 0 and f"{statistics.mean([70.0, 72.0]):.2f}% +-" in r.stdout and "over 2 runs" in r.stdout
    # same method, another shot count: another config, also refused
    write_log(tmp_path / "x" / "coop4", [50.0])
    write_cfg(tmp_path / "x" / "coop4", "CoOp", 3, shots=4)
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "mixes 3 experiments" in r.stderr and "DATASET.NUM_SHOTS" in r.stderr


def test_validation_blocks_are_not_results(tmp_path):
    d = tmp_path / "seed1"
    d.mkdir()
    d.joinpath("log.txt").write_text("Evaluate on the *val* set\n=> result\n* accuracy: 90.0%\n"
                                     "epoch [2/2]\nEvaluate on the *val* set\n=> result\n* accuracy: 91.0%\n")
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1  # an unfinished best_val run has no test result
    d.joinpath("log.txt-2026-01-01-00-00-00").write_text("Evaluate on the *test* set\n=> result\n* accuracy: 66.0%\n"
                                                         "Elapsed: 0:01:00\n")
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0 and "66.00% +- 0.00%" in r.stdout
