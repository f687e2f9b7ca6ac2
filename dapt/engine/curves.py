"""``curves.png`` in every run folder: the loss terms, the training accuracy and the learning rate
per epoch, drawn from the values the trainer sends to tensorboard (``train/<term>``, ``train/lr``)
and averaged over each epoch's steps. Rank 0 rewrites ``curves.json`` (the numbers) atomically at
the end of every epoch and redraws ``curves.png`` at most once a minute and when training ends
(``dapt.utils.plots.Redraw``); a failed write is a warning, not the end of the run. A resumed run
keeps the epochs before its start."""
from __future__ import annotations

import json
import logging
from typing import Dict, List, Tuple

import torch

logger = logging.getLogger(__name__)

CURVES_PNG = "curves.png"
CURVES_JSON = "curves.json"


class CurvesHook:
    """A trainer hook (the methods of ``dapt.engine.trainer.HookBase``, which it does not import:
    the trainer registers it, so importing the trainer here would make a cycle)."""

    trainer = None

    def __init__(self):
        self.history: Dict[str, List[Tuple[int, float]]] = {}
        self._sums: Dict[str, float] = {}
        self._counts: Dict[str, int] = {}
        self._warned = False
        self._redraw = None

    def before_train(self):
        from dapt.utils.plots import Redraw

        self._redraw = Redraw()
        path = self.trainer.output_dir / CURVES_JSON
        if self.trainer.start_epoch > 0 and path.is_file():  # resumed: keep the epochs already trained
            try:
                saved = json.loads(path.read_text())
                self.history = {k: [(int(e), float(v)) for e, v in pts if int(e) <= self.trainer.start_epoch]
                                for k, pts in saved.items()}
            except (ValueError, TypeError, OSError) as exc:
                logger.warning("%s unreadable (%s): the curves restart at epoch %d", path, exc,
                               self.trainer.start_epoch + 1)

    def before_epoch(self):
        self._sums.clear()
        self._counts.clear()

    def after_step(self, losses):
        # the step's values may be device tensors: summed on the device, read once per epoch
        values = {f"train/{k}": (v.detach() if torch.is_tensor(v) else float(v)) for k, v in losses.items()}
        values["train/lr"] = float(self.trainer.get_current_lr())  # a Python float already
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
            self._counts[k] = self._counts.get(k, 0) + 1

    def after_train(self):
        if self.trainer.is_main and self.history:
            self._write(final=True)

    def after_epoch(self):
        if not self._counts:
            return
        epoch = self.trainer.epoch + 1
        for k, n in self._counts.items():
            pts = [p for p in self.history.get(k, []) if p[0] != epoch]
            self.history[k] = pts + [(epoch, float(self._sums[k]) / n)]
        if self.trainer.is_main:
            self._write(final=False)

    def _write(self, final: bool) -> None:
        draw = self._redraw is None or self._redraw.due(final)
        if final and not draw:  # the json is current and the figure shows it
            return
        try:
            self.write(draw=draw)
        except OSError as exc:  # a plot is not worth the run: warn (once) and train on
            if not self._warned:
                logger.warning("curves not written (%s); training goes on", exc)
                self._warned = True

    def write(self, draw: bool = True) -> None:
        """``curves.json``, and ``curves.png`` when ``draw``."""
        from dapt.utils.atomic import atomic_write_text

        out = self.trainer.output_dir
        atomic_write_text(out / CURVES_JSON, json.dumps(self.history, indent=1))
        if not draw:
            return
        from dapt.utils.plots import curves_plot

        cfg = self.trainer.cfg
        name = cfg.TRAINER.NAME + (f" on {cfg.DATASET.NAME}" if cfg.DATASET.NAME else "")
        curves_plot(str(out / CURVES_PNG), self.history, title=f"{name} (epoch means)")
