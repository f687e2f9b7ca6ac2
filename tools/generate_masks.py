"""DAPT masks: Grad-CAM export, official import, segmenters, compare, visualize.

The code is dapt/tools/generate_masks.py, installed as ``dapt-generate-masks``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's dapt, without an install

from dapt.tools.generate_masks import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
