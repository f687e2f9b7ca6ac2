"""Objects on scenes: a synthetic testbed for spurious foreground/background correlations.

Each image is one foreground object (a drawn shape with a random colour, scale, rotation and
position) composited on one background scene (a procedural texture named from the paper's
background vocabulary). The object's mask is known exactly, so the DAPT mask store gets ground
truth (``masks/gt``), and the background class of every image is recorded for analysis.

The knob ``p``: in the train and val splits, each object class sits on "its own" background
(class ``i`` -> ``BACKGROUNDS[i % len(BACKGROUNDS)]``) with probability ``p`` and on a uniformly
drawn other background otherwise. Two test sets: ``test`` (decorrelated) pairs every class with
every background equally often; ``test_correlated`` follows the training distribution (own
background with probability ``p``). With ``p`` near 1 a model can learn the background instead of
the object: its accuracy on the correlated test set then exceeds that on the decorrelated one, and
the gap between them measures how much it relies on the shortcut.

Colours are shared across classes (each object takes a uniformly drawn colour that stands out from
its background), so the shape is the only cue that names the class.

Everything is numpy + PIL and deterministic per seed: every image draws from its own
``numpy.random.default_rng([seed, split, index])`` stream, so the same parameters give the same
bytes. A generation is written to a temporary folder and renamed into place when complete, with a
``.complete`` file that records its parameters; a second call with the same parameters reuses it.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from dapt.config import CN, register_config

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 3

# Foreground object classes, in label order (base = first half, new = second half).
OBJECTS = ["circle", "square", "triangle", "star", "cross", "heart", "ring", "diamond", "arrow", "moon"]

# Background scene classes; object class i's "own" background is BACKGROUNDS[i % len(BACKGROUNDS)].
BACKGROUNDS = ["grass", "sky", "water", "road", "wall", "sand", "snow", "building", "railway", "rock"]

# Named object colours (RGB); each image jitters its colour a little.
COLORS: Dict[str, Tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 30),
    "green": (40, 185, 60),
    "blue": (35, 70, 220),
    "purple": (135, 45, 185),
    "pink": (250, 120, 190),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
    "cyan": (20, 205, 225),
}

# Colours are shared across classes: by default (``typical_color_p`` 0) every object takes a colour drawn
# uniformly from those that stand out from its background, so every colour appears in every class and
# colour says nothing about the class: shape is the only reliable foreground cue. Each class also has a
# typical colour, which an object takes with probability ``typical_color_p`` (DATASET.SCENES.TYPICAL_COLOR_P):
# raise it to add a colour cue (a second, foreground-side shortcut).
TYPICAL_COLORS = {"circle": "red", "square": "orange", "triangle": "green", "star": "yellow", "cross": "blue",
                  "heart": "purple", "ring": "black", "diamond": "cyan", "arrow": "white", "moon": "pink"}
TYPICAL_COLOR_P = 0.0
_MIN_CONTRAST = 110.0

SPLIT_FILE = "split_dapt_scenes.json"
SCENE_LABELS_FILE = "scene_labels.json"
COMPLETE_FILE = ".complete"
MASK_SOURCE = "gt"
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "test_correlated": 3}
SPLITS = tuple(_SPLIT_CODES)
CORRELATED_TEST = "test_correlated"


# ---------------------------------------------------------------------------------------- textures
def _smooth_noise(rng: np.random.Generator, size: int, cells_y: int, cells_x: int) -> np.ndarray:
    """Value noise in [-1, 1]: a (cells_y+1, cells_x+1) random grid, bilinearly upsampled."""
    grid = rng.uniform(-1.0, 1.0, size=(cells_y + 1, cells_x + 1))
    ys = np.linspace(0, cells_y, size, endpoint=False) + 0.5 * cells_y / size
    xs = np.linspace(0, cells_x, size, endpoint=False) + 0.5 * cells_x / size
    y0 = np.minimum(np.floor(ys).astype(int), cells_y - 1)
    x0 = np.minimum(np.floor(xs).astype(int), cells_x - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    fy = fy * fy * (3 - 2 * fy)  # smoothstep
    fx = fx * fx * (3 - 2 * fx)
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _tint(base: Sequence[float], shade: np.ndarray) -> np.ndarray:
    """An (H, W, 3) image: ``base`` colour plus a per-pixel brightness offset ``shade``."""
    return np.asarray(base, dtype=np.float64)[None, None, :] + shade[:, :, None]


def render_background(name: str, size: int, seed: int) -> np.ndarray:
    """The (size, size, 3) uint8 texture of background class ``name`` for an integer seed."""
    rng = np.random.default_rng([int(seed), 7919])
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64) / s
    if name == "grass":
        blades = _smooth_noise(rng, s, 3, s // 2) * 28  # thin vertical streaks
        img = _tint((70, 150, 45), blades + _smooth_noise(rng, s, 4, 4) * 18 + rng.normal(0, 7, (s, s)))
        img[..., 0] -= 15 * (blades > 10)
    elif name == "sky":
        top, bottom = np.array([70, 140, 225.0]), np.array([175, 215, 250.0])
        img = top[None, None] * (1 - yy[..., None]) + bottom[None, None] * yy[..., None]
        cloud = np.clip(_smooth_noise(rng, s, 3, 5) - 0.25, 0, None) * 140
        img = img + cloud[..., None] + rng.normal(0, 2, (s, s, 1))
    elif name == "water":
        freq = rng.uniform(14, 22)
        phase = rng.uniform(0, 2 * math.pi)
        wobble = _smooth_noise(rng, s, 2, 4) * 2.5
        ripples = np.sin(yy * freq * 2 * math.pi / 4 + phase + wobble) * 22
        img = _tint((25, 95, 150), ripples + _smooth_noise(rng, s, 3, 3) * 12)
        img[..., 2] += ripples * 0.6
    elif name == "road":
        img = _tint((85, 85, 90), rng.normal(0, 11, (s, s)) + _smooth_noise(rng, s, 4, 4) * 6)
        line_color = np.array([235, 205, 40.0]) if rng.random() < 0.5 else np.array([235, 235, 235.0])
        c = int(rng.integers(s // 4, 3 * s // 4))
        w = max(1, s // 24)
        dash = ((np.arange(s) + int(rng.integers(0, s))) % (s // 4)) < (s // 8)
        if rng.random() < 0.5:
            img[c - w:c + w, dash] = line_color
        else:
            img[dash, c - w:c + w] = line_color
    elif name == "wall":
        bh = max(4, s // 8)
        bw = 2 * bh
        rows = np.arange(s) // bh
        offset = (rows % 2) * (bw // 2)
        cols = (np.arange(s)[None, :] + offset[:, None]) // bw
        brick_id = rows[:, None] * 1000 + cols
        uniq, inv = np.unique(brick_id, return_inverse=True)
        jitter = rng.normal(0, 14, size=len(uniq))[inv].reshape(s, s)
        img = _tint((160, 62, 45), jitter + rng.normal(0, 6, (s, s)))
        mortar = (np.arange(s) % bh == 0)[:, None] | ((np.arange(s)[None, :] + offset[:, None]) % bw == 0)
        img[mortar] = (200, 195, 185)
    elif name == "sand":
        dunes = np.sin((xx * 0.8 + yy) * rng.uniform(5, 9) + rng.uniform(0, 6.3)) * 14
        img = _tint((220, 192, 135), dunes + rng.normal(0, 8, (s, s)))
    elif name == "snow":
        shade = _smooth_noise(rng, s, 3, 3) * 10
        img = _tint((236, 240, 248), shade + rng.normal(0, 3, (s, s)))
        img[..., 2] += 6
        sparkle = rng.random((s, s)) < 0.02
        img[sparkle] = 255
    elif name == "building":
        img = _tint((150, 150, 160), _smooth_noise(rng, s, 2, 2) * 10 + rng.normal(0, 4, (s, s)))
        cell = max(6, s // 6)
        ox, oy = int(rng.integers(0, cell)), int(rng.integers(0, cell))
        wy = ((np.arange(s) + oy) % cell) >= cell // 3
        wx = ((np.arange(s) + ox) % cell) >= cell // 3
        win = wy[:, None] & wx[None, :]
        lit = rng.random(size=(s // cell + 2, s // cell + 2)) < 0.3
        lit_map = lit[((np.arange(s) + oy) // cell)][:, ((np.arange(s) + ox) // cell)]
        img[win] = (40, 55, 80)
        img[win & lit_map] = (235, 215, 120)
    elif name == "railway":
        img = _tint((120, 100, 80), rng.normal(0, 16, (s, s)))  # ballast
        period = max(4, s // 8)
        sleepers = (np.arange(s) + int(rng.integers(0, period))) % period < max(2, period // 2)
        a, b = int(s * 0.3), int(s * 0.7)
        img[sleepers, a - 4:b + 4] = (95, 65, 40)
        for c in (a, b):
            img[:, c - 1:c + 2] = (175, 175, 185)
        if rng.random() < 0.5:
            img = img.transpose(1, 0, 2)
    elif name == "rock":
        blotch = _smooth_noise(rng, s, 6, 6) * 35 + _smooth_noise(rng, s, 12, 12) * 18
        img = _tint((125, 112, 100), blotch + rng.normal(0, 6, (s, s)))
        cracks = np.abs(_smooth_noise(rng, s, 5, 5)) < 0.04
        img[cracks] = (55, 50, 45)
    else:
        raise ValueError(f"unknown background class '{name}'; known: {', '.join(BACKGROUNDS)}")
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------- shapes
def _circle(n: int = 48, r: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def shape_polygons(name: str) -> List[Tuple[np.ndarray, int]]:
    """A shape as (polygon in unit coordinates, fill) pairs drawn in order (fill 0 cuts a hole)."""
    if name == "circle":
        return [(_circle(), 1)]
    if name == "square":
        return [(np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]]), 1)]
    if name == "triangle":
        t = np.array([90, 210, 330]) * math.pi / 180
        return [(np.stack([np.cos(t), -np.sin(t)], 1) + [0, 0.2], 1)]
    if name == "star":
        t = np.arange(10) * math.pi / 5 + math.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return [(np.stack([r * np.cos(t), -r * np.sin(t)], 1), 1)]
    if name == "cross":
        a, b = 0.3, 0.95
        return [(np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a],
                           [-b, -a], [-a, -a]]), 1)]
    if name == "heart":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return [(np.stack([x / 17, -(y + 2.5) / 17], 1), 1)]
    if name == "ring":
        return [(_circle(), 1), (_circle(r=0.55), 0)]
    if name == "diamond":
        return [(np.array([[0, -1.0], [0.55, 0], [0, 1.0], [-0.55, 0]]), 1)]
    if name == "arrow":
        return [(np.array([[-1.0, -0.22], [0.2, -0.22], [0.2, -0.6], [1.0, 0], [0.2, 0.6], [0.2, 0.22],
                           [-1.0, 0.22]]), 1)]
    if name == "moon":
        return [(_circle(), 1), (_circle(r=0.85, cx=0.45, cy=-0.15), 0)]
    raise ValueError(f"unknown object class '{name}'; known: {', '.join(OBJECTS)}")


def render_object_mask(name: str, size: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Boolean (size, size) mask of a shape centred at (cx, cy) pixels, ``radius`` pixels, rotated by ``angle``."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    for poly, fill in shape_polygons(name):
        pts = poly @ rot.T * radius + [cx, cy]
        draw.polygon([(float(x), float(y)) for x, y in pts], fill=255 if fill else 0)
    return np.asarray(canvas) > 0


def _pick_color(rng: np.random.Generator, background: np.ndarray, obj: str,
                typical_p: float) -> Tuple[str, np.ndarray]:
    """The object's typical colour (probability ``typical_p``) or a random named colour, either
    standing out from the background's mean colour, with a small jitter."""
    mean = background.reshape(-1, 3).mean(0)

    def contrasts(name):
        return np.linalg.norm(np.asarray(COLORS[name], float) - mean) > _MIN_CONTRAST

    names = list(COLORS)
    order = rng.permutation(len(names))
    chosen = names[order[0]]
    for i in order:
        if contrasts(names[i]):
            chosen = names[i]
            break
    typical = TYPICAL_COLORS.get(obj)
    if rng.random() < typical_p and typical is not None and contrasts(typical):
        chosen = typical
    rgb = np.clip(np.asarray(COLORS[chosen], float) + rng.integers(-12, 13, size=3), 0, 255)
    return chosen, rgb.astype(np.uint8)


MAX_ROTATION_DEG = 30.0  # objects stand roughly upright, as in photos


def render_scene(obj: Optional[str], background: str, size: int, seed: int,
                 color: Optional[str] = None, max_rotation_deg: float = MAX_ROTATION_DEG,
                 typical_color_p: float = TYPICAL_COLOR_P) -> Dict[str, object]:
    """Render one image; deterministic in its arguments.

    Returns ``image`` (uint8 HxWx3), ``mask`` (bool HxW, exactly the pixels the object covers;
    every one of them differs from the background texture), ``background_seed`` (the seed given to
    ``render_background``), ``color`` (colour name) and the geometry. ``obj=None`` gives the bare
    background. ``color`` forces a colour name instead of the typical-or-random contrasting one (``typical_color_p``:
    probability of the class's typical colour); the object is rotated by a
    uniform angle within +-``max_rotation_deg``.
    """
    rng = np.random.default_rng([int(seed), 104729])
    bg_seed = int(rng.integers(0, 2**31 - 1))
    bg = render_background(background, size, bg_seed)
    out: Dict[str, object] = {"background_seed": bg_seed, "background": background, "object": obj}
    if obj is None:
        out.update(image=bg.copy(), mask=np.zeros((size, size), bool), color="")
        return out
    radius = size * rng.uniform(0.22, 0.38)
    margin = radius * 0.85
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    angle = rng.uniform(-1.0, 1.0) * math.radians(max_rotation_deg)
    mask = render_object_mask(obj, size, cx, cy, radius, angle)
    if color is None:
        color, rgb = _pick_color(rng, bg, obj, typical_color_p)
    else:
        rgb = np.clip(np.asarray(COLORS[color], float) + rng.integers(-12, 13, size=3), 0, 255).astype(np.uint8)
    # a little shading across the object, so it is not a flat stamp
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float64)
    shade = ((gx - cx) * math.cos(angle) + (gy - cy) * math.sin(angle)) / max(radius, 1.0) * 12
    fg = np.clip(rgb[None, None, :].astype(np.float64) + shade[..., None], 0, 255).astype(np.uint8)
    # the mask must be exactly the pixels that differ from the background: nudge any exact match
    same = np.all(fg == bg, axis=-1) & mask
    fg[same, 0] = np.where(fg[same, 0] < 128, fg[same, 0] + 1, fg[same, 0] - 1)
    image = bg.copy()
    image[mask] = fg[mask]
    out.update(image=image, mask=mask, color=color, cx=float(cx), cy=float(cy), radius=float(radius),
               angle=float(angle))
    return out


def own_background(label: int, backgrounds: Sequence[str] = BACKGROUNDS) -> str:
    """The background class that object class ``label`` sits on with probability ``p``."""
    return backgrounds[label % len(backgrounds)]


# ---------------------------------------------------------------------------------------- dataset folders
def dataset_folder_name(*, seed: int, p: float, n_train_per_class: int, n_val_per_class: int,
                        n_test_per_class: int, image_size: int, num_classes: int,
                        typical_color_p: float = TYPICAL_COLOR_P) -> str:
    """A folder name that changes with every generation parameter."""
    colour = f"_tc{typical_color_p:g}" if typical_color_p else ""
    return (f"p{p:g}_seed{seed}_c{num_classes}_s{image_size}_n{n_train_per_class}-{n_val_per_class}-"
            f"{n_test_per_class}{colour}_v{GENERATOR_VERSION}")


def default_cache_root() -> str:
    """Where generated datasets live when DATASET.ROOT is empty: ``$DAPT_CACHE/datasets``."""
    base = os.environ.get("DAPT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dapt")
    return os.path.join(base, "datasets")


def _plan(split: str, n_per_class: int, num_classes: int, p: float, seed: int,
          backgrounds: Sequence[str]) -> List[Tuple[int, int, int]]:
    """(label, background index, index within the split) of every image of a split: ``test`` pairs
    every class with every background equally often; the others put a class on its own background
    with probability ``p``, else on a uniformly drawn other one."""
    rng = np.random.default_rng([int(seed), _SPLIT_CODES[split], 15485863])
    nb = len(backgrounds)
    items = []
    for label in range(num_classes):
        own = label % nb
        if split == "test":  # every background equally often (up to the remainder), shuffled
            bgs = rng.permutation(np.arange(n_per_class) % nb)
        else:
            on_own = rng.random(n_per_class) < p
            others = [b for b in range(nb) if b != own]
            drawn = rng.integers(0, len(others), size=n_per_class)
            bgs = np.where(on_own, own, np.asarray(others)[drawn])
        for k in range(n_per_class):
            items.append((label, int(bgs[k]), label * n_per_class + k))
    return items


def _image_seed(seed: int, split: str, index: int) -> int:
    ss = np.random.SeedSequence([int(seed), _SPLIT_CODES[split], int(index)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def generate_objects_on_scenes(dataset_dir: str, *, seed: int = 1, p: float = 0.9, n_train_per_class: int = 32,
                               n_val_per_class: int = 8, n_test_per_class: int = 20, image_size: int = 64,
                               num_classes: int = 10, typical_color_p: float = TYPICAL_COLOR_P,
                               overwrite: bool = False) -> str:
    """Write an objects-on-scenes dataset into ``dataset_dir`` (CoOp layout); returns ``dataset_dir``.

    Layout: ``images/<class>/<split>_<k>.png``, ``split_dapt_scenes.json`` (CoOp split lists of
    ``[relpath under images, label, classname]``, plus the correlated test set ``test_correlated``),
    exact masks ``masks/gt/<class>/<split>_<k>.png``
    (single-channel, 0 background, 1 foreground) with ``masks/gt/manifest.json``, per-image scene
    records in ``scene_labels.json`` and ``.complete`` (the parameters). A complete folder made with
    the same parameters is reused; one with other parameters is an error unless ``overwrite``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"DATASET.SCENES.P must be in [0, 1], got {p}")
    if not 1 <= num_classes <= len(OBJECTS):
        raise ValueError(f"DATASET.SCENES.NUM_CLASSES must be in [1, {len(OBJECTS)}], got {num_classes}")
    if not 0.0 <= typical_color_p <= 1.0:
        raise ValueError(f"DATASET.SCENES.TYPICAL_COLOR_P must be in [0, 1], got {typical_color_p}")
    if image_size < 16:
        raise ValueError(f"DATASET.SCENES.IMAGE_SIZE must be at least 16, got {image_size}")
    if min(n_train_per_class, n_val_per_class, n_test_per_class) < 1:
        raise ValueError("DATASET.SCENES.N_TRAIN / N_VAL / N_TEST must be at least 1 image per class")
    params = {"generator": "objects_on_scenes", "version": GENERATOR_VERSION, "seed": int(seed), "p": float(p),
              "n_train_per_class": int(n_train_per_class), "n_val_per_class": int(n_val_per_class),
              "n_test_per_class": int(n_test_per_class), "image_size": int(image_size),
              "num_classes": int(num_classes), "typical_color_p": float(typical_color_p),
              "objects": OBJECTS[:num_classes], "backgrounds": list(BACKGROUNDS)}
    dataset_dir = os.path.abspath(dataset_dir)
    marker = os.path.join(dataset_dir, COMPLETE_FILE)
    if os.path.isfile(marker):
        with open(marker) as f:
            done = json.load(f)
        if done == params:
            logger.info("Objects-on-scenes data already generated in %s", dataset_dir)
            return dataset_dir
        if not overwrite:
            raise ValueError(f"{dataset_dir} holds an objects-on-scenes generation with other parameters "
                             f"({done}); use another folder or delete it")
    if os.path.exists(dataset_dir) and not (overwrite or os.path.isfile(marker)) and os.listdir(dataset_dir):
        raise ValueError(f"{dataset_dir} exists, is not empty and holds no complete generation; delete it first")

    parent = os.path.dirname(dataset_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(dataset_dir)}.tmp-")
    try:
        _write_generation(tmp, params)
        with open(os.path.join(tmp, COMPLETE_FILE), "w") as f:
            json.dump(params, f, indent=2, sort_keys=True)
        if os.path.isdir(dataset_dir):
            if os.path.isfile(marker):  # finished meanwhile by another process with the same parameters
                with open(marker) as f:
                    if json.load(f) == params:
                        shutil.rmtree(tmp, ignore_errors=True)
                        return dataset_dir
            shutil.rmtree(dataset_dir)
        try:
            os.rename(tmp, dataset_dir)
        except OSError:
            if not os.path.isfile(marker):  # lost a race only if the winner finished
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Generated objects-on-scenes data in %s", dataset_dir)
    return dataset_dir


def _write_generation(root: str, params: dict) -> None:
    size, seed, p = params["image_size"], params["seed"], params["p"]
    classes = params["objects"]
    backgrounds = params["backgrounds"]
    sizes = {"train": params["n_train_per_class"], "val": params["n_val_per_class"],
             "test": params["n_test_per_class"], CORRELATED_TEST: params["n_test_per_class"]}
    split: Dict[str, list] = {}
    scene_labels: Dict[str, dict] = {}
    mask_root = os.path.join(root, "masks", MASK_SOURCE)
    for c in classes:
        os.makedirs(os.path.join(root, "images", c), exist_ok=True)
        os.makedirs(os.path.join(mask_root, c), exist_ok=True)
    count = 0
    for name in SPLITS:
        entries = []
        for label, b, index in _plan(name, sizes[name], len(classes), p, seed, backgrounds):
            cname = classes[label]
            rel = f"{cname}/{name}_{index:05d}.png"
            img_seed = _image_seed(seed, name, index)
            r = render_scene(cname, backgrounds[b], size, img_seed, typical_color_p=params["typical_color_p"])
            Image.fromarray(r["image"], "RGB").save(os.path.join(root, "images", rel))
            Image.fromarray(r["mask"].astype(np.uint8), "L").save(os.path.join(mask_root, rel))
            entries.append([rel, label, cname])
            scene_labels[rel] = {"split": name, "background": backgrounds[b], "background_label": b,
                                 "own_background": b == label % len(backgrounds), "color": r["color"],
                                 "seed": img_seed, "background_seed": r["background_seed"]}
            count += 1
        split[name] = entries
    with open(os.path.join(root, SPLIT_FILE), "w") as f:
        json.dump(split, f, indent=1)
    with open(os.path.join(root, SCENE_LABELS_FILE), "w") as f:
        json.dump({"backgrounds": list(backgrounds), "images": scene_labels}, f, indent=1, sort_keys=True)
    manifest = {"source": MASK_SOURCE, "encoding": "label_map_0bg_255void",
                "generator": f"dapt.data.synthetic.scenes v{GENERATOR_VERSION} (exact drawn-object masks)",
                "text_prompt_template": "", "count": count, "dataset": "ObjectsOnScenes", "split": "train",
                "splits": list(SPLITS)}
    with open(os.path.join(mask_root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)


def read_scene_labels(dataset_dir: str) -> Dict[str, dict]:
    """The per-image scene records (keyed by path under ``images``) of a generated folder."""
    with open(os.path.join(dataset_dir, SCENE_LABELS_FILE)) as f:
        return json.load(f)["images"]


# ---------------------------------------------------------------------------------------- config
@register_config
def add_scenes_config(cfg) -> None:
    """DATASET.SCENES: the generation parameters of the ObjectsOnScenes dataset."""
    cfg.DATASET.SCENES = CN()
    cfg.DATASET.SCENES.P = 0.9  # train/val: probability that an object class sits on its own background (test: uniform)
    cfg.DATASET.SCENES.SEED = 1  # generation seed (independent of the training SEED)
    cfg.DATASET.SCENES.N_TRAIN = 32  # training images per class
    cfg.DATASET.SCENES.N_VAL = 8  # validation images per class
    cfg.DATASET.SCENES.N_TEST = 20  # test images per class
    cfg.DATASET.SCENES.IMAGE_SIZE = 64  # image side in pixels
    cfg.DATASET.SCENES.NUM_CLASSES = 10  # object classes (at most 10: the first NUM_CLASSES of OBJECTS)
    cfg.DATASET.SCENES.TYPICAL_COLOR_P = TYPICAL_COLOR_P  # probability an object takes its class's typical colour (0: colour says nothing)
