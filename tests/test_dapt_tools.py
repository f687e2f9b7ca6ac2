"""tools/generate_masks.py: official import, Grad-CAM export and triplet sheets (stand-in data manager)."""
import importlib
from pathlib import Path

import numpy as np
from PIL import Image

from dapt.decouple.masks import MaskStore

REPO = Path(__file__).resolve().parents[1]


def load_tool():
    return importlib.import_module("dapt.tools.generate_masks")


def test_import_official_cli(tmp_path, capsys):
    tool = load_tool()
    ddir = tmp_path / "oxford_pets"
    (ddir / "images").mkdir(parents=True)
    (ddir / "mask").mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(ddir / "images" / name)
    rgb = np.zeros((3, 3, 3), np.uint8)
    rgb[1, 1, 0] = 1
    Image.fromarray(rgb).save(ddir / "mask" / "a.jpg", format="PNG")
    assert tool.main(["import-official", "--dataset-dir", str(ddir), "--image-root", str(ddir / "images")]) == 0
    assert "converted 1 masks" in capsys.readouterr().out
    store = MaskStore(str(ddir), str(ddir / "images"))
    assert store.read(str(ddir / "images" / "a.jpg")).sum() == 1
    assert "b.jpg" in (ddir / "masks" / "seem" / "missing.txt").read_text()


def _stand_in_trainer(tmp_path, tiny_name, source):
    from test_dapt_train import make_cfg, stand_in_dm
    from dapt.trainers.maple import MaPLe

    def build(cfg):
        c = make_cfg(tiny_name, tmp_path / "out", source)
        c.DAPT.ENABLED = cfg.DAPT.ENABLED
        return MaPLe(c, dm=stand_in_dm(tmp_path / "data"))

    return build


def test_visualize_and_gradcam_export(tmp_path, tiny_name, monkeypatch):
    import dapt.engine.build as build

    tool = load_tool()
    monkeypatch.setattr(build, "build_trainer", _stand_in_trainer(tmp_path, tiny_name, "precomputed"))
    out = tmp_path / "viz"
    assert tool.main(["visualize", "--out", str(out), "--batches", "1", "--output-dir", str(tmp_path / "o")]) == 0
    sheet = np.asarray(Image.open(out / "triplet_000.png"))
    assert sheet.shape == (3 * 32 + 2 * 4, 4 * 32 + 3 * 4, 3)
    monkeypatch.setattr(build, "build_trainer", _stand_in_trainer(tmp_path, tiny_name, "gradcam"))
    assert tool.main(["gradcam", "--output-dir", str(tmp_path / "o2")]) == 0
    store = MaskStore(str(tmp_path / "data"), str(tmp_path / "data" / "images"), source="gradcam_cache")
    img = next((tmp_path / "data" / "images").rglob("*.jpg"))
    m = store.read(str(img))
    assert m.shape == (40, 48) and set(np.unique(m)) <= {0, 1}  # written at the original resolution
    assert store.read_manifest()["count"] == 9
