"""A small line plot written with PIL (no plotting dependency): accuracy against p per method."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def line_plot(path: str, xs: Sequence[float], series: Dict[str, List[Tuple[float, float]]], title: str,
              xlabel: str, ylabel: str, size: Tuple[int, int] = (720, 480)) -> None:
    """``series``: name -> [(mean, std) per x]. Draws mean lines with +-std bars and a legend."""
    w, h = size
    left, right, top, bottom = 70, 180, 40, 60
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    values = [m + s for pts in series.values() for m, s in pts] + [m - s for pts in series.values() for m, s in pts]
    lo, hi = min(values + [0.0]), max(values + [100.0])
    lo, hi = max(0.0, lo - 5), min(100.0, hi + 5)
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0

    def px(x):
        return left + (x - x0) / span * (w - left - right)

    def py(y):
        return h - bottom - (y - lo) / ((hi - lo) or 1.0) * (h - top - bottom)

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for k in range(6):
        y = lo + k * (hi - lo) / 5
        d.line([left - 4, py(y), left, py(y)], fill="black")
        d.text((8, py(y) - 6), f"{y:.0f}", fill="black", font=font)
        d.line([left, py(y), w - right, py(y)], fill=(230, 230, 230))
    for x in xs:
        d.line([px(x), h - bottom, px(x), h - bottom + 4], fill="black")
        d.text((px(x) - 10, h - bottom + 8), f"{x:g}", fill="black", font=font)
    d.text(((w - right + left) / 2 - 40, h - 25), xlabel, fill="black", font=font)
    d.text((left, 4), title, fill="black", font=font)
    d.text((8, top - 16), ylabel, fill="black", font=font)
    for i, (name, pts) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        coords = [(px(x), py(m)) for x, (m, _) in zip(xs, pts)]
        if len(coords) > 1:
            d.line(coords, fill=c, width=2)
        for (x, (m, s)), (cx, cy) in zip(zip(xs, pts), coords):
            d.line([cx, py(m - s), cx, py(m + s)], fill=c)
            d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=c)
        ly = top + 10 + 18 * i
        d.line([w - right + 10, ly + 6, w - right + 30, ly + 6], fill=c, width=3)
        d.text((w - right + 35, ly), name, fill="black", font=font)
    img.save(path)
