"""The reproduction scripts call train.py with existing config files and the right flags."""
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_script(tmp_path, script, args, **env):
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    log = tmp_path / (Path(script).stem + ".calls")
    (fake / "python").write_text(f'#!/bin/bash\necho "$@" >> {log}\n')
    (fake / "python").chmod(0o755)
    e = {"PATH": f"{fake}:/usr/bin:/bin", "DATA": "/data", "SEEDS": "1", "OUT": str(tmp_path / "out"), **env}
    r = subprocess.run(["bash", str(REPO / script), *args], capture_output=True, text=True, env=e)
    assert r.returncode == 0, r.stderr
    return [shlex.split(line) for line in log.read_text().splitlines()]


def flag(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


def check_configs(argv):
    for key in ("--config-file", "--dataset-config-file"):
        if key in argv:
            assert (REPO / flag(argv, key)).is_file(), flag(argv, key)


@pytest.mark.parametrize("mode", ["dapt-s", "dapt-g"])
def test_dapt_few_shot(tmp_path, mode):
    calls = run_script(tmp_path, "scripts/dapt/few_shot.sh", ["oxford_pets", mode], SHOTS="1 16")
    assert len(calls) == 2
    for argv in calls:
        check_configs(argv)
        assert argv[0] == "train.py" and flag(argv, "--mode") == mode and flag(argv, "--trainer") == "MaPLe"
    assert calls[1][-2:] == ["DATASET.NUM_SHOTS", "16"]


def test_baseline_base_to_novel(tmp_path):
    train = run_script(tmp_path, "scripts/baselines/base2new_train.sh", ["dtd"])
    test = run_script(tmp_path, "scripts/baselines/base2new_test.sh", ["dtd"])
    for argv in train + test:
        check_configs(argv)
        assert "--mode" not in argv and flag(argv, "--config-file").endswith("MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml")
    assert flag(test[0], "--model-dir") == flag(train[0], "--output-dir")
    assert "--eval-only" in test[0] and test[0][-1] == "new"


def test_cross_dataset(tmp_path):
    calls = run_script(tmp_path, "scripts/dapt/xd_train.sh", ["dapt-s"])
    calls += run_script(tmp_path, "scripts/dapt/xd_test.sh", ["imagenet_a", "dapt-s"])
    for argv in calls:
        check_configs(argv)
    assert flag(calls[1], "--model-dir") == flag(calls[0], "--output-dir")
