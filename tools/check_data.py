"""Check a dataset folder before training.

The code is dapt/tools/check_data.py, installed as ``dapt-check-data``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's dapt, without an install

from dapt.tools.check_data import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
