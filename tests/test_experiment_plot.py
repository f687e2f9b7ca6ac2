import numpy as np
from PIL import Image

from dapt.experiments.plot import COLOURS, line_plot
from dapt.experiments.scenes import RunSpec, build_cfg, harmonic_mean, markdown_table


def test_plot_draws_each_series(tmp_path):
    path = tmp_path / "p.png"
    line_plot(str(path), [0.5, 0.9], {"a": [(60, 1), (70, 2)], "b": [(40, 0), (30, 0)]}, "t", "p", "acc")
    px = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    for c in COLOURS[:2]:
        assert (px == np.array(c)).all(axis=1).sum() > 50  # each line is drawn in its colour


def test_run_configs_follow_the_method(tmp_path):
    cfg = build_cfg(RunSpec("MaPLe+DAPT-G", seed=2, p=0.8, shots=4, subsample="base"), str(tmp_path))
    assert cfg.TRAINER.NAME == "MaPLe" and cfg.DAPT.ENABLED and cfg.DAPT.MASK.SOURCE == "gradcam"
    assert cfg.DATASET.SCENES.P == 0.8 and cfg.DATASET.NUM_SHOTS == 4 and cfg.DATASET.SUBSAMPLE_CLASSES == "base"
    assert cfg.SEED == 2 and cfg.MODEL.BACKBONE.NAME == "dapt-tiny-vit"
    assert not build_cfg(RunSpec("MaPLe"), str(tmp_path)).DAPT.ENABLED
    assert harmonic_mean(80, 60) == 2 * 80 * 60 / 140
    assert markdown_table(["a", "b"], [["1", "2"]]).splitlines()[2] == "| 1 | 2 |"


def colour_pixels(path, colour):
    px = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    return int((px == np.array(colour)).all(axis=1).sum())


def test_bar_plot_one_bar_per_method_with_height_in_proportion(tmp_path):
    from dapt.experiments.plot import bar_plot

    path = tmp_path / "bars.png"
    bar_plot(str(path), {"zero-shot": 40.0, "MaPLe": 80.0}, "t", "acc")
    a, b = colour_pixels(path, COLOURS[0]), colour_pixels(path, COLOURS[1])
    assert a > 100 and b > 100
    assert abs(b / a - 2.0) < 0.1  # same width, twice the height


def test_curves_plot_draws_every_tag(tmp_path):
    from dapt.experiments.plot import curves_plot

    path = tmp_path / "curves.png"
    curves_plot(str(path), {"train/loss": [(1, 2.0), (2, 1.0)], "train/loss_fg": [(1, 1.5), (2, 0.5)],
                            "train/acc": [(1, 30.0), (2, 60.0)], "train/lr": [(1, 1e-5), (2, 3e-3)]}, "run")
    w, h = Image.open(path).size
    assert w > 3 * 300 and h > 200  # three panels: loss, accuracy, learning rate
    assert colour_pixels(path, COLOURS[0]) > 30 and colour_pixels(path, COLOURS[1]) > 30


def test_line_panels_share_colours_and_skip_missing_points(tmp_path):
    from dapt.experiments.plot import line_panels

    path = tmp_path / "panels.png"
    acc = {"a": [(60, 1), (70, 2), (65, None)], "b": [(40, 0), (30, 0), (35, 3)], "c": [(50, 0), (55, 1), (52, 0)]}
    gap = {"b": [(None, None), (5, 1), (9, 2)]}  # "b" only, from the second x on
    line_panels(str(path), [0.5, 0.8, 0.95], [(acc, "accuracy", "%"), (gap, "gap", "points")], "p", "title")
    img = np.asarray(Image.open(path).convert("RGB"))
    w = img.shape[1]
    assert w > 2 * 500  # two panels side by side

    def count(part, colour):
        return int((part.reshape(-1, 3) == np.array(colour)).all(axis=1).sum())

    left, right = img[:, : w // 2], img[:, w // 2:]
    assert all(count(left, COLOURS[i]) > 50 for i in range(3))
    # the right panel draws "b" in the colour it has on the left (the second), and nothing else
    assert count(right, COLOURS[1]) > 50 and count(right, COLOURS[0]) == 0 and count(right, COLOURS[2]) == 0
