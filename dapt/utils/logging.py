"""Logging setup: console + ``<output>/log.txt`` (never overwritten), and meters."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Optional

_HANDLER_TAG = "_dapt_handler"


class TqdmHandler(logging.StreamHandler):
    """A console handler that writes through ``tqdm.write``, so log lines never collide with an
    active progress bar (the bar is cleared, the line printed, the bar redrawn)."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001  (logging must never raise)
            self.handleError(record)


def setup_logger(output_dir: Optional[str] = None, level: int = logging.INFO, console: bool = True) -> Optional[Path]:
    """Send the ``dapt`` loggers to the console and to ``output_dir/log.txt``.

    An existing ``log.txt`` is kept: the new log goes to ``log.txt-<timestamp>`` (Dassl's habit).
    Returns the log file path.
    """
    root = logging.getLogger("dapt")
    root.setLevel(level)
    for h in list(root.handlers):
        if getattr(h, _HANDLER_TAG, False):
            root.removeHandler(h)
            h.close()
    fmt = logging.Formatter("%(message)s")
    if console:
        ch = TqdmHandler(sys.stdout)
        ch.setFormatter(fmt)
        setattr(ch, _HANDLER_TAG, True)
        root.addHandler(ch)
    path = None
    if output_dir:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "log.txt"
        if path.exists():
            path = out / ("log.txt-" + time.strftime("%Y-%m-%d-%H-%M-%S"))
        fh = logging.FileHandler(path)
        fh.setFormatter(fmt)
        setattr(fh, _HANDLER_TAG, True)
        root.addHandler(fh)
    root.propagate = False
    return path


class AverageMeter:
    """Running average of a scalar."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, val: float, n: int = 1):
        self.val = float(val)
        self.sum += float(val) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(self.count, 1)
