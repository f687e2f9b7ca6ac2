"""PNG sheets of DAPT training batches.

The code is dapt/tools/visualize_masks.py, installed as ``dapt-visualize-masks``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's dapt, without an install

from dapt.tools.visualize_masks import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
