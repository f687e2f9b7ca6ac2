"""``python -m dapt``: the train.py command line (same flags as ``dapt-train``)."""
import sys

from dapt.cli import main

if __name__ == "__main__":
    sys.exit(main())
