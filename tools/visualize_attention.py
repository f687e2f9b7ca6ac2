"""Attention-map and mask sheets of trained prompts.

The code is dapt/tools/visualize_attention.py, installed as ``dapt-visualize-attention``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's dapt, without an install

from dapt.tools.visualize_attention import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli())
