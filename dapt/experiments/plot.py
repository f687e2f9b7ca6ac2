"""The plots (matplotlib, headless): they live in ``dapt.utils.plots`` so that the engine can draw
a run's ``curves.png``; this module keeps the experiments' import path."""
from dapt.utils.plots import COLOURS, bar_plot, curves_plot, line_panels, line_plot

__all__ = ["COLOURS", "bar_plot", "curves_plot", "line_panels", "line_plot"]
