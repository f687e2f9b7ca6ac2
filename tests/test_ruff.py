"""The code passes the ruff configuration in pyproject.toml (pyflakes + pycodestyle)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ruff_command():
    exe = Path(sys.executable).with_name("ruff")
    if exe.is_file():
        return [str(exe)]
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.fail("ruff is not installed: pip install -e '.[test]'")


def test_ruff_passes():
    r = subprocess.run(ruff_command() + ["check", "--no-cache", "dapt", "tools", "tests", "train.py", "setup.py"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
