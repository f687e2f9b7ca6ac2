"""The objects-on-scenes generator and the ObjectsOnScenes dataset."""
import json
import math
import os
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from dapt.data.synthetic import scenes

SMALL = dict(n_train_per_class=4, n_val_per_class=2, n_test_per_class=10, image_size=32, num_classes=4)


def _files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def _split(d):
    with open(os.path.join(d, scenes.SPLIT_FILE)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return scenes.generate_objects_on_scenes(str(tmp_path_factory.mktemp("scn") / "a"), seed=3, p=0.7, **SMALL)


def test_same_seed_same_bytes_other_seed_other_images(gen, tmp_path):
    again = scenes.generate_objects_on_scenes(str(tmp_path / "b"), seed=3, p=0.7, **SMALL)
    a, b = _files(gen), _files(again)
    assert sorted(a) == sorted(b)
    assert all(a[k] == b[k] for k in a)
    other = _files(scenes.generate_objects_on_scenes(str(tmp_path / "c"), seed=4, p=0.7, **SMALL))
    images = [k for k in a if k.startswith("images" + os.sep)]
    assert len(images) == 4 * (4 + 2 + 10 + 10)
    differing = sum(a[k] != other[k] for k in images)
    assert differing == len(images)


def test_layout_split_and_manifest(gen):
    split = _split(gen)
    assert [len(split[k]) for k in ("train", "val", "test", "test_correlated")] == [16, 8, 40, 40]
    for entries in split.values():
        for rel, label, cname in entries:
            assert cname == scenes.OBJECTS[label]
            assert rel.startswith(cname + "/")
            assert os.path.isfile(os.path.join(gen, "images", rel))
            assert os.path.isfile(os.path.join(gen, "masks", "gt", rel))
    with open(os.path.join(gen, "masks", "gt", "manifest.json")) as f:
        man = json.load(f)
    assert man["source"] == "gt" and man["encoding"] == "label_map_0bg_255void"
    assert man["count"] == 104 and man["split"] == "train"
    labels = scenes.read_scene_labels(gen)
    assert len(labels) == 104


def test_masks_are_exactly_the_pixels_that_differ_from_the_background(gen):
    """Rebuild each image's background texture from its recorded seed: the stored mask must be
    exactly where the written image differs from it (so nothing of the object is outside the mask
    and no background pixel is inside it)."""
    labels = scenes.read_scene_labels(gen)
    for rel, rec in labels.items():
        img = np.asarray(Image.open(os.path.join(gen, "images", rel)).convert("RGB"))
        with Image.open(os.path.join(gen, "masks", "gt", rel)) as m:
            assert m.mode == "L"
            mask = np.asarray(m)
        assert set(np.unique(mask)) <= {0, 1}
        bg = scenes.render_background(rec["background"], 32, rec["background_seed"])
        differs = np.any(img != bg, axis=-1)
        assert np.array_equal(mask == 1, differs), rel
        assert 20 < mask.sum() < 0.8 * mask.size


@pytest.mark.parametrize("obj,area,perimeter", [
    ("circle", math.pi, 2 * math.pi),
    ("square", 1.6 ** 2, 4 * 1.6),
    ("ring", math.pi * (1 - 0.55 ** 2), 2 * math.pi * 1.55),
    ("diamond", 2 * 0.55, 4 * math.hypot(1, 0.55)),
    ("triangle", 3 * math.sqrt(3) / 4, 3 * math.sqrt(3)),
])
def test_mask_area_matches_the_shape_geometry(obj, area, perimeter):
    """A large, centred shape (unit-radius geometry scaled by 40 px): the mask's pixel count is the
    analytic area up to a band along the boundary (at most 0.75 px wide)."""
    size, radius = 128, 40.0
    mask = scenes.render_object_mask(obj, size, 64.0, 64.0, radius, 0.3)
    assert abs(mask.sum() - area * radius ** 2) < 0.75 * perimeter * radius


def test_p_one_puts_every_train_and_val_image_on_its_own_background(tmp_path):
    d = scenes.generate_objects_on_scenes(str(tmp_path / "p1"), seed=0, p=1.0, **SMALL)
    labels = scenes.read_scene_labels(d)
    split = _split(d)
    for key in ("train", "val"):
        for rel, label, _ in split[key]:
            assert labels[rel]["background"] == scenes.BACKGROUNDS[label]
    # test: every class sees every background equally often (10 images per class, 10 backgrounds)
    for label in range(4):
        counts = Counter(labels[rel]["background"] for rel, y, _ in split["test"] if y == label)
        assert counts == Counter({b: 1 for b in scenes.BACKGROUNDS})


def test_correlated_test_set_follows_p_and_the_decorrelated_one_does_not(tmp_path):
    d = scenes.generate_objects_on_scenes(str(tmp_path / "c"), seed=2, p=0.9, n_train_per_class=1, n_val_per_class=1,
                                          n_test_per_class=40, image_size=16, num_classes=10)
    labels = scenes.read_scene_labels(d)
    split = _split(d)
    own_corr = [labels[rel]["own_background"] for rel, _, _ in split["test_correlated"]]
    own_test = [labels[rel]["own_background"] for rel, _, _ in split["test"]]
    assert len(own_corr) == len(own_test) == 400
    assert abs(np.mean(own_corr) - 0.9) < 0.075  # 5 standard deviations
    assert np.mean(own_test) == pytest.approx(0.1)  # every background equally often: 4 of 40 on its own
    assert not set(r for r, _, _ in split["test"]) & set(r for r, _, _ in split["test_correlated"])


def test_colours_are_shared_and_say_nothing_about_the_class(tmp_path):
    """Shape is the only reliable cue: every colour appears in at least 3 classes, and a classifier
    that sees only the object's colour (the training split's most frequent class of that colour, with
    the training split's background correlation at its strongest) is near chance on the test split."""
    d = scenes.generate_objects_on_scenes(str(tmp_path / "col"), seed=1, p=0.95, n_train_per_class=32,
                                          n_val_per_class=1, n_test_per_class=20, image_size=32, num_classes=10,
                                          typical_color_p=0.0)
    labels = scenes.read_scene_labels(d)
    split = _split(d)
    classes_of = {}
    for rel, y, _ in split["train"] + split["test"]:
        classes_of.setdefault(labels[rel]["color"], set()).add(y)
    assert set(classes_of) == set(scenes.COLORS)
    assert min(len(v) for v in classes_of.values()) >= 3
    votes = {}
    for rel, y, _ in split["train"]:
        votes.setdefault(labels[rel]["color"], Counter())[y] += 1
    for key in ("test", "test_correlated"):
        hits = [votes[labels[rel]["color"]].most_common(1)[0][0] == y for rel, y, _ in split[key]]
        assert np.mean(hits) <= 0.20, key
    # with the colour cue switched on, the same classifier does far better: the check can fail
    d2 = scenes.generate_objects_on_scenes(str(tmp_path / "col2"), seed=1, p=0.95, n_train_per_class=32,
                                           n_val_per_class=1, n_test_per_class=20, image_size=32, num_classes=10,
                                           typical_color_p=0.9)
    labels2, split2 = scenes.read_scene_labels(d2), _split(d2)
    votes2 = {}
    for rel, y, _ in split2["train"]:
        votes2.setdefault(labels2[rel]["color"], Counter())[y] += 1
    hits2 = [votes2[labels2[rel]["color"]].most_common(1)[0][0] == y for rel, y, _ in split2["test"]]
    assert np.mean(hits2) > 0.5
    kw = dict(seed=1, p=0.95, n_train_per_class=32, n_val_per_class=1, n_test_per_class=20, image_size=32, num_classes=10)
    assert "_tc0.9_" in scenes.dataset_folder_name(typical_color_p=0.9, **kw)
    assert "_tc" not in scenes.dataset_folder_name(typical_color_p=0.0, **kw)


def test_p_zero_and_p_half(tmp_path):
    d0 = scenes.generate_objects_on_scenes(str(tmp_path / "p0"), seed=0, p=0.0, **SMALL)
    labels = scenes.read_scene_labels(d0)
    assert not any(r["own_background"] for r in labels.values() if r["split"] in ("train", "val", "test_correlated"))
    d5 = scenes.generate_objects_on_scenes(str(tmp_path / "p5"), seed=0, p=0.5, n_train_per_class=60,
                                           n_val_per_class=1, n_test_per_class=1, image_size=16, num_classes=10)
    labels = scenes.read_scene_labels(d5)
    own = [r["own_background"] for r in labels.values() if r["split"] == "train"]
    assert len(own) == 600
    assert abs(np.mean(own) - 0.5) < 0.07  # 5 standard deviations


def test_reuse_and_parameter_mismatch(gen):
    marker = os.path.join(gen, scenes.COMPLETE_FILE)
    before = os.stat(marker).st_mtime_ns
    assert scenes.generate_objects_on_scenes(gen, seed=3, p=0.7, **SMALL) == gen
    assert os.stat(marker).st_mtime_ns == before
    with pytest.raises(ValueError, match="other parameters"):
        scenes.generate_objects_on_scenes(gen, seed=3, p=0.8, **SMALL)
    names = {scenes.dataset_folder_name(seed=s, p=p, **SMALL) for s in (1, 2) for p in (0.5, 0.9)}
    assert len(names) == 4


def test_bad_parameters():
    with pytest.raises(ValueError, match="SCENES.P"):
        scenes.generate_objects_on_scenes("/nonexistent/x", seed=0, p=1.5, **SMALL)
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        scenes.generate_objects_on_scenes("/nonexistent/x", seed=0, p=0.5, n_train_per_class=1, n_val_per_class=1,
                                          n_test_per_class=1, num_classes=11)


def _cfg(root, **scn):
    from dapt.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "configs", "datasets", "objects_on_scenes.yaml"))
    cfg.DATASET.ROOT = str(root)
    for k, v in dict(N_TRAIN=6, N_VAL=3, N_TEST=4, IMAGE_SIZE=32, NUM_CLASSES=6, **scn).items():
        setattr(cfg.DATASET.SCENES, k, v)
    return cfg


def test_registered_dataset_base_new_fewshot_and_masks(tmp_path):
    from dapt.data.registry import build_dataset
    from dapt.decouple.masks import MaskStore

    cfg = _cfg(tmp_path)
    cfg.SEED = 1
    cfg.DATASET.NUM_SHOTS = 2
    cfg.DATASET.SUBSAMPLE_CLASSES = "new"
    ds = build_dataset(cfg)
    assert ds.dataset_dir.startswith(str(tmp_path))
    assert ds.classnames == scenes.OBJECTS[3:6]
    assert len(ds.train_x) == 6 and len(ds.val) == 6 and len(ds.test) == 12
    assert {d.label for d in ds.test} == {0, 1, 2}
    corr = ds.extra_tests["correlated"]
    assert len(corr) == 12 and {d.label for d in corr} == {0, 1, 2}
    assert all(d.classname == ds.classnames[d.label] for d in corr)
    assert not {d.impath for d in corr} & {d.impath for d in ds.test}
    assert os.path.isfile(os.path.join(ds.dataset_dir, "split_fewshot", "shot_2-seed_1.pkl"))
    store = MaskStore(ds.dataset_dir, ds.image_dir, source="gt")
    labels = ds.scene_labels
    for d in ds.train_x:
        assert store.read(d.impath).sum() > 0
        rel = os.path.relpath(d.impath, ds.image_dir)
        assert ds.background_of(d.impath) == labels[rel]["background"]


def test_empty_root_uses_the_cache_folder(tmp_path, monkeypatch):
    from dapt.data.datasets.objects_on_scenes import ObjectsOnScenes

    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "cache"))
    cfg = _cfg("", P=0.5)
    ds = ObjectsOnScenes(cfg)
    assert ds.dataset_dir.startswith(str(tmp_path / "cache" / "datasets" / "objects_on_scenes"))
    assert "p0.5" in os.path.basename(ds.dataset_dir)
    assert len(ds.classnames) == 6


def test_every_final_test_also_reports_the_correlated_accuracy(tmp_path, monkeypatch):
    """The result block holds `* correlated_accuracy`, the run reader picks it up, and it equals
    the accuracy recomputed image by image on the dataset's correlated test set."""
    import torch
    from PIL import Image as PILImage

    from dapt.config import get_cfg_default, merge_from_file, merge_from_list
    from dapt.launch import evaluate
    from dapt.tools.runs import parse_log_text

    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "cache"))
    root = os.path.join(os.path.dirname(__file__), "..")
    cfg = get_cfg_default()
    merge_from_file(cfg, os.path.join(root, "configs/datasets/objects_on_scenes.yaml"))
    merge_from_file(cfg, os.path.join(root, "configs/trainers/MaPLe/toy_scenes.yaml"))
    merge_from_list(cfg, ["TRAINER.NAME", "ZeroshotCLIP", "OUTPUT_DIR", str(tmp_path / "zs"), "DATASET.SCENES.P", "0.9",
                          "DATASET.SCENES.N_TEST", "6", "DATASET.SCENES.N_TRAIN", "2", "DATASET.SCENES.N_VAL", "1",
                          "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.TEST.BATCH_SIZE", "7"])
    cfg.freeze()
    trainer = evaluate(cfg, console=False)
    final, _ = parse_log_text((tmp_path / "zs" / "log.txt").read_text())
    assert set(final) >= {"accuracy", "correlated_accuracy"}
    items = trainer.dm.dataset.extra_tests["correlated"]
    assert len(items) == 5 * 6
    with torch.no_grad():
        x = torch.stack([trainer.dm.tfm_test(PILImage.open(d.impath).convert("RGB")) for d in items])
        pred = trainer.model_inference(x.to(trainer.device)).argmax(1).cpu()
    want = 100.0 * float((pred == torch.tensor([d.label for d in items])).float().mean())
    assert final["correlated_accuracy"] == pytest.approx(round(want, 1), abs=0.051)
    assert trainer.last_results["correlated_accuracy"] == pytest.approx(want)
    trainer.test("val")  # a validation pass is not a final test: no extra test sets
    assert "accuracy" in trainer.last_results and "correlated_accuracy" not in trainer.last_results
