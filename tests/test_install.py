"""Installing: every console command resolves and answers --help, ``python -m dapt`` is the train
command line, configs given as relative paths are found in the working directory first and then
among the shipped ones, and (slow) a wheel built offline runs the quickstart from anywhere."""
import ast
import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def commands():
    """setup.py's COMMANDS mapping (read, not executed: running setup.py would build)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMMANDS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no COMMANDS")


def test_commands_cover_the_tools_users_run():
    names = set(commands())
    assert {"dapt-train", "dapt-quickstart", "dapt-generate-masks", "dapt-check-data", "dapt-parse-results",
            "dapt-sweep", "dapt-tables", "dapt-visualize-attention"} <= names
    # every tools/*.py that is a wrapper of a dapt.tools module is installed as a command
    for wrapper in (REPO / "tools").glob("*.py"):
        text = wrapper.read_text()
        if "from dapt.tools." in text:
            module = text.split("from dapt.tools.")[1].split()[0]
            assert f"dapt-{module.replace('_', '-')}" in names, wrapper.name


@pytest.mark.parametrize("name", sorted(commands()))
def test_console_command_resolves_and_helps(name, capsys):
    module, func = commands()[name].split(":")
    fn = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as exc:
        fn(["--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_python_m_dapt_is_the_train_cli():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for mod in ("dapt", "dapt.cli"):
        r = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0 and "--dataset-config-file" in r.stdout and "--mode" in r.stdout, (mod, r.stderr)
    # no arguments: not a silent success (no trainer or dataset given -> one error line, exit != 0)
    r = subprocess.run([sys.executable, "-m", "dapt.cli"], capture_output=True, text=True, env=env, timeout=120,
                       cwd=REPO)
    assert r.returncode != 0 and r.stderr.strip()


def test_relative_config_working_directory_first_then_shipped(tmp_path, monkeypatch):
    from dapt.config import get_cfg_default, merge_from_file
    from dapt.config.paths import resolve_config, shipped_config_dirs

    monkeypatch.chdir(tmp_path)
    shipped = shipped_config_dirs()[0] / "trainers" / "MaPLe" / "toy_scenes.yaml"
    assert resolve_config("configs/trainers/MaPLe/toy_scenes.yaml") == str(shipped)
    assert resolve_config("trainers/MaPLe/toy_scenes.yaml") == str(shipped)
    cfg = get_cfg_default()
    merge_from_file(cfg, "configs/trainers/MaPLe/toy_scenes.yaml")
    assert cfg.MODEL.BACKBONE.NAME == "dapt-tiny-vit"
    # a file of the same name in the working directory wins
    local = tmp_path / "configs" / "trainers" / "MaPLe" / "toy_scenes.yaml"
    local.parent.mkdir(parents=True)
    local.write_text("OPTIM:\n  MAX_EPOCH: 7\n")
    assert resolve_config("configs/trainers/MaPLe/toy_scenes.yaml") == "configs/trainers/MaPLe/toy_scenes.yaml"
    cfg = get_cfg_default()
    merge_from_file(cfg, "configs/trainers/MaPLe/toy_scenes.yaml")
    assert cfg.OPTIM.MAX_EPOCH == 7
    # neither: the one-line error names the path as given
    with pytest.raises(ValueError, match="configs/trainers/Nope.yaml does not exist"):
        merge_from_file(get_cfg_default(), "configs/trainers/Nope.yaml")


def test_readme_testbed_recipes_build_their_configs(monkeypatch, tmp_path):
    """Every ``python train.py`` line of the README on the testbed names existing configs of the toy CLIP."""
    import shlex

    from dapt.cli import build_parser, setup_cfg

    monkeypatch.chdir(REPO)
    lines = [ln for ln in (REPO / "README.md").read_text().splitlines()
             if ln.startswith("python train.py") and "objects_on_scenes" in ln]
    trainers = set()
    for ln in lines:
        argv = shlex.split(ln)[2:]
        cfg = setup_cfg(build_parser().parse_args(argv))
        assert cfg.MODEL.BACKBONE.NAME == "dapt-tiny-vit" and cfg.DATASET.NAME == "ObjectsOnScenes", ln
        assert cfg.OPTIM.MAX_EPOCH > cfg.OPTIM.WARMUP_EPOCH, ln  # the recipes train past the warm-up
        trainers.add(cfg.TRAINER.NAME)
    assert {"ZeroshotCLIP", "CoOp", "CoCoOp", "VPT", "IVLP", "MaPLe", "PromptSRC"} <= trainers


@pytest.mark.slow
def test_wheel_installs_and_runs_quickstart_outside_the_repo(tmp_path):
    # build from a clean copy of the sources, offline, with the venv's setuptools
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "README.md", "LICENSE", "MANIFEST.in", "pyproject.toml"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "dapt", src / "dapt", ignore=ignore)
    shutil.copytree(REPO / "configs", src / "configs", ignore=ignore)
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(dist),
                        str(src)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(dist.glob("dapt-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dapt/configs/trainers/MaPLe/toy_scenes.yaml" in names
    assert not any(n.startswith("tools/") for n in names)  # no top-level tools package
    target = tmp_path / "T"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (target / "bin" / "dapt-quickstart").is_file()

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = dict(env, PYTHONPATH=str(target), DAPT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", "import dapt; print(dapt.__file__)"], capture_output=True, text=True,
                       env=env, cwd=cwd, timeout=120)
    assert Path(r.stdout.strip()).resolve().is_relative_to(target.resolve()), r.stdout + r.stderr
    # the installed console script (run with this interpreter: its shebang names the build's python)
    out = cwd / "qs"
    r = subprocess.run([sys.executable, str(target / "bin" / "dapt-quickstart"), "--methods", "zero-shot CLIP",
                        "--output-dir", str(out)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| zero-shot CLIP |" in r.stdout
    commands_md = (out / "results.md").read_text()
    configs = [w for w in commands_md.split() if w.endswith(".yaml")]
    assert len(configs) == 2
    for c in configs:
        assert Path(c).resolve().is_relative_to((target / "dapt" / "configs").resolve()), c
    saved = (out / "p0.9_all" / "zero-shot_CLIP" / "seed1" / "config.yaml").read_text()
    assert "dapt-tiny-vit" in saved
    assert (out / "results.png").stat().st_size > 0
