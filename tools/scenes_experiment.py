"""The full objects-on-scenes experiment (sweep + tables).

The code is dapt/tools/scenes_experiment.py, installed as ``dapt-scenes-experiment``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's dapt, without an install

from dapt.tools.scenes_experiment import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
