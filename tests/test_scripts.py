"""The reproduction scripts call train.py with existing config files and the right flags."""
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def fake_python(tmp_path, exit_code=0):
    """A `python` on PATH that records its train.py calls (and answers the import check)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    (fake / "python").write_text(f'#!/bin/bash\n[ "$1" = -c ] && exit 0\necho "$@" >> {log}\nexit {exit_code}\n')
    (fake / "python").chmod(0o755)
    return fake, log


def script_env(tmp_path, fake, **env):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return {"PATH": f"{fake}:/usr/bin:/bin", "DATA": str(data), "SEEDS": "1", "OUT": str(tmp_path / "out"), **env}


def run_script(tmp_path, script, args, **env):
    fake, log = fake_python(tmp_path)
    if log.exists():
        log.unlink()
    r = subprocess.run(["bash", str(REPO / script), *args], capture_output=True, text=True,
                       env=script_env(tmp_path, fake, **env))
    assert r.returncode == 0, r.stderr
    return [shlex.split(line) for line in log.read_text().splitlines()]


def run_failing(tmp_path, script, args, exit_code=0, drop=(), **env):
    """Run a script expected to stop early: (returncode, stderr, number of train.py calls)."""
    fake, log = fake_python(tmp_path, exit_code)
    e = script_env(tmp_path, fake, **env)
    for k in drop:
        e.pop(k)
    r = subprocess.run(["bash", str(REPO / script), *args], capture_output=True, text=True, env=e)
    calls = len(log.read_text().splitlines()) if log.exists() else 0
    return r.returncode, r.stderr.strip(), calls


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


def test_data_unset_or_missing_stops_before_any_run(tmp_path):
    rc, err, calls = run_failing(tmp_path, "scripts/dapt/few_shot.sh", ["oxford_pets"], drop=["DATA"])
    assert rc == 1 and calls == 0 and err.count("\n") == 0 and "DATA is not set" in err
    rc, err, calls = run_failing(tmp_path, "scripts/dapt/few_shot.sh", ["oxford_pets"], DATA=str(tmp_path / "nope"))
    assert rc == 1 and calls == 0 and "nope" in err and "not a folder" in err


def test_bad_dataset_or_trainer_lists_the_valid_names(tmp_path):
    rc, err, calls = run_failing(tmp_path, "scripts/dapt/few_shot.sh", ["oxford_pet"])
    assert rc == 1 and calls == 0 and "unknown dataset 'oxford_pet'" in err and "oxford_pets" in err and "dtd" in err
    rc, err, calls = run_failing(tmp_path, "scripts/dapt/base2new_train.sh", ["dtd"], TRAINER="Maple")
    assert rc == 1 and calls == 0 and "TRAINER=Maple" in err and "MaPLe" in err
    rc, err, calls = run_failing(tmp_path, "scripts/dapt/few_shot.sh", ["dtd"], CFG="nope")
    assert rc == 1 and calls == 0 and "nope.yaml" in err and "dapt_vit_b16_t" in err


def test_stops_at_the_first_failed_run_naming_its_log(tmp_path):
    rc, err, calls = run_failing(tmp_path, "scripts/dapt/few_shot.sh", ["dtd"], exit_code=3, SHOTS="1 2", SEEDS="1 2")
    assert rc == 1 and calls == 1
    assert "exit 3" in err and err.endswith("few_shot/dtd/MaPLe_dapt-s/dapt_vit_b16_t/1shots/seed1/log.txt")


def test_python_without_dapt_says_to_activate_the_venv(tmp_path):
    fake, _ = fake_python(tmp_path)
    (fake / "nodapt").write_text("#!/bin/bash\nexit 1\n")
    (fake / "nodapt").chmod(0o755)
    e = script_env(tmp_path, fake, PYTHON="nodapt")
    r = subprocess.run(["bash", str(REPO / "scripts/dapt/few_shot.sh"), "dtd"], capture_output=True, text=True, env=e)
    assert r.returncode == 1 and "source .venv/bin/activate" in r.stderr


# every script family shares scripts/dapt/common.sh's early checks (the others source it)
TRAIN_SCRIPTS = sorted(str(p.relative_to(REPO)) for p in (REPO / "scripts").glob("*/*.sh")
                       if p.name != "common.sh" and "dapt_chain" not in p.name)


@pytest.mark.parametrize("script", TRAIN_SCRIPTS)
def test_every_script_checks_data_and_dataset_first(tmp_path, script):
    rc, err, calls = run_failing(tmp_path, script, ["dtd"], drop=["DATA"])
    assert rc == 1 and calls == 0 and err.count("\n") == 0 and "DATA is not set" in err, (script, err)
    if script.endswith("xd_train.sh") and "promptkd" not in script:
        return  # the source model: ImageNet, no dataset argument
    rc, err, calls = run_failing(tmp_path, script, ["oxford_pet"])
    assert rc == 1 and calls == 0 and "unknown dataset 'oxford_pet'" in err and "oxford_pets" in err, (script, err)
