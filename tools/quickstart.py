"""The README's first command: the objects-on-scenes quickstart.

The code is dapt/tools/quickstart.py, installed as ``dapt-quickstart``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's dapt, without an install

from dapt.tools.quickstart import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
