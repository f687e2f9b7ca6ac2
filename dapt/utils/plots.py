"""Plots people look at, drawn with matplotlib on its headless Agg backend.

- ``line_plot``: accuracy against a knob (p) per method, mean with +-std error bars;
  ``line_panels``: several such panels side by side over the same x (accuracy, and the shortcut gap);
- ``bar_plot``: one bar per method (the quickstart's table);
- ``curves_plot``: a run's loss terms, accuracy and learning rate against the epoch (``curves.png``);
- ``Redraw``: when a figure that a run keeps up to date is worth redrawing (drawing one costs about
  half a second of CPU, a real share of a short run's epoch).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

# matplotlib's default cycle (tab10), as RGB bytes (tests look for these exact colours)
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _rgb(i: int):
    return tuple(c / 255 for c in COLOURS[i % len(COLOURS)])


def _save(fig, path: str) -> None:
    """PNG, written atomically (a reader never sees half a file)."""
    from dapt.utils.atomic import atomic_write

    fig.tight_layout()
    try:
        atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


class Redraw:
    """Rate limit for a figure a run rewrites as it goes (``curves.png``, ``mask_quality.png``): its
    numbers (the json next to it) are written every time, the figure at most once per ``interval``
    seconds, counted from the run's start, and always when the run ends (``due(final=True)``). A
    short run therefore draws each figure once; a long one keeps it fresh to within ``interval``."""

    INTERVAL = 60.0

    def __init__(self, interval: Optional[float] = None, clock=time.monotonic):
        self.interval = self.INTERVAL if interval is None else float(interval)
        self.clock = clock
        self.last = clock()
        self.pending = False

    def due(self, final: bool = False) -> bool:
        """Called after new numbers arrived (or at the end, ``final``): True when the figure should
        be drawn now; the caller draws it. At the end only a figure with undrawn numbers is due."""
        if not final:
            self.pending = True
        if not self.pending or (not final and self.clock() - self.last < self.interval):
            return False
        self.last = self.clock()
        self.pending = False
        return True


Series = Dict[str, List[Tuple[Optional[float], Optional[float]]]]


def _nan(v: Optional[float]) -> float:
    return float("nan") if v is None else float(v)


def line_panels(path: str, xs: Sequence[float], panels: Sequence[Tuple[Series, str, str]], xlabel: str,
                title: str = "", panel_size: Tuple[int, int] = (620, 460)) -> None:
    """``panels``: [(series, panel title, ylabel)], side by side; ``series``: name -> [(mean, std) per x],
    None where a point is missing (not drawn). A name keeps its colour in every panel; one legend."""
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(panel_size[0] * max(len(panels), 1) / 100,
                                                              panel_size[1] / 100), squeeze=False)
    names = list(dict.fromkeys(n for series, _, _ in panels for n in series))
    for ax, (series, sub_title, ylabel) in zip(axes[0], panels):
        for name, pts in series.items():
            ax.errorbar(list(xs), [_nan(m) for m, _ in pts], yerr=[_nan(s) if s is not None else 0.0 for _, s in pts],
                        color=_rgb(names.index(name)), label=name, linewidth=2, marker="o", capsize=3)
        ax.set(title=sub_title, xlabel=xlabel, ylabel=ylabel, xticks=list(xs))
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)  # the colours are the same in every panel
    if title:
        fig.suptitle(title, fontsize=11)
    _save(fig, path)


def line_plot(path: str, xs: Sequence[float], series: Series, title: str,
              xlabel: str, ylabel: str, size: Tuple[int, int] = (720, 480)) -> None:
    """``series``: name -> [(mean, std) per x]. Mean lines with +-std error bars and a legend."""
    line_panels(path, xs, [(series, title, ylabel)], xlabel, panel_size=size)


def bar_plot(path: str, values: Mapping[str, float], title: str, ylabel: str,
             errors: Mapping[str, float] = None, size: Tuple[int, int] = (640, 400)) -> None:
    """One bar per name, labelled with its value (optionally with +-error bars)."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100))
    bars = ax.bar(range(len(names)), [values[n] for n in names], color=[_rgb(i) for i in range(len(names))],
                  yerr=[errors.get(n, 0.0) for n in names] if errors else None, capsize=4)
    ax.bar_label(bars, labels=[f"{values[n]:.1f}" for n in names], padding=2)
    ax.set_xticks(range(len(names)), names, rotation=15, ha="right")
    ax.set(title=title, ylabel=ylabel, ylim=(0, max(100.0, max(values.values(), default=0) * 1.1)))
    _save(fig, path)


def curves_plot(path: str, history: Mapping[str, Sequence[Tuple[float, float]]], title: str = "") -> None:
    """``history``: tag -> [(epoch, value)]. Three panels: loss terms, accuracies, learning rate."""
    groups = {"loss": [t for t in history if "loss" in t],
              "accuracy (%)": [t for t in history if "acc" in t or t.endswith("mAP")],
              "learning rate": [t for t in history if t.endswith("lr")]}
    groups = {k: v for k, v in groups.items() if v}
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(4.2 * max(len(groups), 1), 3.4), squeeze=False)
    for ax, (label, tags) in zip(axes[0], groups.items()):
        for i, tag in enumerate(sorted(tags)):
            pts = history[tag]
            ax.plot([e for e, _ in pts], [v for _, v in pts], color=_rgb(i), marker="o", markersize=3, label=tag)
        _epoch_axis(ax, ylabel=label)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _epoch_axis(ax, **props) -> None:
    """An axis over whole epochs, with a light grid and a small legend."""
    ax.set(xlabel="epoch", **props)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def mask_quality_plot(path: str, records: Sequence[Mapping], title: str = "") -> None:
    """``records``: [{epoch, iou, fg_fraction, gt_fg_fraction}] (``mask_quality.json``). The training
    masks' IoU against ground truth and the foreground fractions of both, against the epoch."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    xs = [int(r["epoch"]) for r in records]
    lines = (("iou", "IoU vs ground truth", "-"), ("fg_fraction", "foreground fraction", "-"),
             ("gt_fg_fraction", "ground-truth foreground fraction", "--"))
    for i, (key, label, style) in enumerate(lines):
        ax.plot(xs, [float(r[key]) for r in records], color=_rgb(i), linestyle=style, marker="o", markersize=3,
                label=label)
    _epoch_axis(ax, ylabel="fraction", ylim=(0, 1.02))
    if title:
        ax.set_title(title, fontsize=10)
    _save(fig, path)
