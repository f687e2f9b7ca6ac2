"""Experiments on the synthetic objects-on-scenes testbed (used by tools/quickstart.py)."""
