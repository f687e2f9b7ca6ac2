"""Data core: split files, few-shot sampling and its cache, base/new subsampling, transforms,
the DataManager, and mAP against hand computations."""
import os
import pickle
import random
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from dapt.config import get_cfg_default
from dapt.data import (CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, DataManager, DatasetBase, Datum, build_transform, read_split,
                       save_split, subsample_classes)
from dapt.data.base import fewshot_cache_path, load_pickle, rebase_paths
from dapt.engine.multilabel import MultiLabelEvaluator, average_precision, mean_average_precision


def _items(n_per_class, n_classes, prefix="/d/images"):
    return [Datum(impath=f"{prefix}/c{c}/{i}.jpg", label=c, classname=f"class_{c}")
            for c in range(n_classes) for i in range(n_per_class[c] if isinstance(n_per_class, list) else n_per_class)]


def test_split_json_roundtrip(tmp_path):
    prefix = str(tmp_path / "images")
    train, val, test = _items(2, 3, prefix), _items(1, 3, prefix), _items(1, 2, prefix)
    path = str(tmp_path / "split.json")
    save_split(train, val, test, path, prefix)
    import json

    raw = json.load(open(path))
    assert raw["train"][0] == ["c0/0.jpg", 0, "class_0"]  # relative path, label, classname
    tr, va, te = read_split(path, prefix)
    assert [(d.impath, d.label, d.classname) for d in tr] == [(d.impath, d.label, d.classname) for d in train]
    assert len(va) == 3 and len(te) == 2 and isinstance(te[0].label, int)


def test_read_split_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nosuch.json"):
        read_split(str(tmp_path / "nosuch.json"), str(tmp_path))


def test_fewshot_sizes_and_coop_equivalence():
    data = _items([5, 2, 7], 3)
    base = DatasetBase(train_x=data)
    out = base.generate_fewshot_dataset(data, num_shots=4, rng=random.Random(1))
    counts = np.bincount([d.label for d in out])
    assert counts.tolist() == [4, 2, 4]  # a class with fewer images keeps all of them
    rep = base.generate_fewshot_dataset(data, num_shots=4, repeat=True, rng=random.Random(1))
    assert np.bincount([d.label for d in rep]).tolist() == [4, 4, 4]
    assert base.generate_fewshot_dataset(data, num_shots=-1) is data
    # CoOp draws with the global random right after random.seed(SEED): same items
    random.seed(1)
    expected = []
    for c, n in enumerate([5, 2, 7]):
        items = [d for d in data if d.label == c]
        expected += random.sample(items, 4) if n >= 4 else items
    assert [d.impath for d in out] == [d.impath for d in expected]


def test_subsample_base_new_relabels():
    train, test = _items(2, 5), _items(1, 5)
    b_train, b_test = subsample_classes(train, test, subsample="base")
    n_train, n_test = subsample_classes(train, test, subsample="new")
    assert sorted({d.label for d in b_train}) == [0, 1, 2]  # ceil(5/2) = 3 base classes
    assert sorted({d.classname for d in b_test}) == ["class_0", "class_1", "class_2"]
    assert sorted({(d.label, d.classname) for d in n_test}) == [(0, "class_3"), (1, "class_4")]
    assert len(n_train) == 4 and len(b_train) == 6
    assert subsample_classes(train, test, subsample="all") == (train, test)
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        subsample_classes(train, subsample="half")


def test_dataset_base_properties():
    ds = DatasetBase(train_x=_items(1, 3), test=_items(1, 3))
    assert ds.num_classes == 3 and ds.classnames == ["class_0", "class_1", "class_2"]
    assert ds.lab2cname == {0: "class_0", 1: "class_1", 2: "class_2"} and ds.multi_label is False and ds.val is None


def test_fewshot_cache_written_then_read(tmp_path):
    ds = DatasetBase(train_x=[])
    ds.dataset_dir = str(tmp_path / "d")
    fs_dir = os.path.join(ds.dataset_dir, "split_fewshot")
    train, val = _items(6, 2, ds.dataset_dir), _items(6, 2, ds.dataset_dir)
    tr, va = ds.load_or_sample_fewshot(train, val, 2, 3, fs_dir)
    path = fewshot_cache_path(fs_dir, 2, 3)
    assert path.endswith("split_fewshot/shot_2-seed_3.pkl") and os.path.isfile(path)
    assert len(tr) == 4 and len(va) == 4  # val: min(K, 4) per class
    saved = load_pickle(path)
    assert [d.impath for d in saved["train"]] == [d.impath for d in tr]
    # the cache wins over sampling: overwrite it and reload
    with open(path, "wb") as f:
        pickle.dump({"train": tr[:1], "val": va[:1]}, f)
    tr2, va2 = ds.load_or_sample_fewshot(train, val, 2, 3, fs_dir)
    assert [d.impath for d in tr2] == [tr[0].impath] and len(va2) == 1
    # K=8 > 6 images: val gets min(8, 4) = 4 per class
    _, va8 = ds.load_or_sample_fewshot(train, val, 8, 3, fs_dir)
    assert np.bincount([d.label for d in va8]).tolist() == [4, 4]


def test_dassl_pickled_cache_loads_and_rebases(tmp_path):
    """A cache pickled by Dassl (class dassl.data.datasets.base_dataset.Datum) written under another root."""
    mod = types.ModuleType("dassl.data.datasets.base_dataset")

    class FakeDatum:  # Dassl's attribute layout
        def __init__(self, impath, label, domain=0, classname=""):
            self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

    FakeDatum.__module__ = "dassl.data.datasets.base_dataset"
    FakeDatum.__qualname__ = FakeDatum.__name__ = "Datum"
    mod.Datum = FakeDatum
    names = ["dassl", "dassl.data", "dassl.data.datasets", "dassl.data.datasets.base_dataset"]
    for n in names:
        sys.modules[n] = mod if n.endswith("base_dataset") else types.ModuleType(n)
    try:
        blob = pickle.dumps({"train": [FakeDatum("/old/mount/oxford_pets/images/a.jpg", 3, 0, "pug")]})
    finally:
        for n in names:
            del sys.modules[n]
    p = tmp_path / "c.pkl"
    p.write_bytes(blob)
    data = load_pickle(str(p))
    d = data["train"][0]
    assert isinstance(d, Datum) and d.label == 3 and d.classname == "pug"
    new_dir = str(tmp_path / "oxford_pets")
    assert rebase_paths([d], new_dir)[0].impath == os.path.join(new_dir, "images", "a.jpg")


def _cfg(**kw):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (16, 16)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.PIXEL_MEAN = list(CLIP_PIXEL_MEAN)
    cfg.INPUT.PIXEL_STD = list(CLIP_PIXEL_STD)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.VERBOSE = False
    for k, v in kw.items():
        node, key = k.split("__")
        setattr(getattr(cfg, node), key, v)
    return cfg


def test_test_transform_is_resize_shorter_side_center_crop_normalize():
    cfg = _cfg()
    rng = np.random.RandomState(0)
    img = Image.fromarray(rng.randint(0, 255, (20, 40, 3), np.uint8))
    out = build_transform(cfg, is_train=False)(img)
    # independent: shorter side 20 -> 16 gives 16x32, center crop 16x16 at x offset 8
    ref = img.resize((32, 16), Image.BICUBIC).crop((8, 0, 24, 16))
    ref = torch.from_numpy(np.asarray(ref, np.float32) / 255.0).permute(2, 0, 1)
    ref = (ref - torch.tensor(CLIP_PIXEL_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_PIXEL_STD).view(3, 1, 1)
    assert out.shape == (3, 16, 16)
    assert torch.allclose(out, ref, atol=0.05)  # PIL vs torchvision antialiasing differ slightly


def test_train_transform_shape_and_errors():
    cfg = _cfg()
    img = Image.new("RGB", (50, 30), (255, 0, 0))
    out = build_transform(cfg, is_train=True)(img)
    assert out.shape == (3, 16, 16)
    red = (1.0 - CLIP_PIXEL_MEAN[0]) / CLIP_PIXEL_STD[0]
    assert torch.allclose(out[0], torch.full((16, 16), red), atol=1e-4)
    # random_crop after resize: a 50x30 image becomes 16x16 whatever the padding draws
    cfg.INPUT.TRANSFORMS = ("resize", "random_crop", "random_flip", "center_crop")
    assert build_transform(cfg, True)(img).shape == (3, 16, 16)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flp")
    with pytest.raises(ValueError, match="random_flp"):
        build_transform(cfg, True)


def _write_images(root, n_per_class, n_classes):
    items = []
    for c in range(n_classes):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
        for i in range(n_per_class):
            p = os.path.join(root, f"c{c}", f"{i}.png")
            Image.new("RGB", (20, 24), (40 * c, 10 * i, 0)).save(p)
            items.append(Datum(impath=p, label=c, classname=f"class_{c}"))
    return items


def test_data_manager_loaders(tmp_path):
    items = _write_images(str(tmp_path), 3, 2)
    ds = DatasetBase(train_x=items, val=None, test=items[:5])
    cfg = _cfg(DATALOADER__NUM_WORKERS=0)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 2
    dm = DataManager(cfg, dataset=ds)
    assert dm.val_loader is None and dm.num_classes == 2 and dm.classnames == ["class_0", "class_1"]
    batches = list(dm.train_loader_x)
    assert len(batches) == 1  # 6 images, batch 4, drop_last since 6 >= 4
    b = batches[0]
    assert b["img"].shape == (4, 3, 16, 16) and b["label"].dtype == torch.int64
    for idx, lab, p in zip(b["index"].tolist(), b["label"].tolist(), b["impath"]):
        assert items[idx].label == lab and items[idx].impath == p
    test = list(dm.test_loader)
    assert [t["index"].tolist() for t in test] == [[0, 1], [2, 3], [4]]  # sequential, last kept
    # fewer images than a batch: no drop_last (Dassl)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    dm = DataManager(cfg, dataset=ds)
    assert sum(len(b["index"]) for b in dm.train_loader_x) == 6


def test_data_manager_workers_and_missing_image(tmp_path):
    items = _write_images(str(tmp_path), 2, 2)
    os.remove(items[1].impath)
    cfg = _cfg(DATALOADER__NUM_WORKERS=1)
    dm = DataManager(cfg, dataset=DatasetBase(train_x=items, test=items))
    with pytest.raises(Exception, match=r"1\.png"):
        list(dm.test_loader)


def test_multilabel_targets_are_float_multi_hot(tmp_path):
    items = _write_images(str(tmp_path), 1, 3)
    ml = [Datum(impath=d.impath, label=[1, 0, 1] if i == 0 else [0, 1, 0]) for i, d in enumerate(items)]

    class ML(DatasetBase):
        multi_label = True

    dm = DataManager(_cfg(), dataset=ML(train_x=ml, test=ml, classnames=["a", "b", "c"]))
    b = next(iter(dm.test_loader))
    assert b["label"].dtype == torch.float32 and b["label"][0].tolist() == [1.0, 0.0, 1.0]
    assert dm.lab2cname == {0: "a", 1: "b", 2: "c"}


def test_average_precision_hand_computed():
    # ranks of positives 1 and 3: AP = (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # a tie between a positive and a negative counts as one threshold: 0.5 * 1/2 + 0.5 * 2/3
    assert average_precision([0.5, 0.5, 0.1], [1, 0, 1]) == pytest.approx(0.25 + 1 / 3)


def test_map_over_classes_with_positives():
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.1, 0.6, 0.4], [0.2, 0.9, 0.1]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    # class 0: order 0(+),1(-),3(-),2(+) -> (1 + 2/4)/2 = 0.75
    # class 1: order 3(-),1(+),2(+),0(-) -> (1/2 + 2/3)/2 = 7/12 ; class 2 has no positive: skipped
    expected = 100 * (0.75 + 7 / 12) / 2
    assert mean_average_precision(scores, targets) == pytest.approx(expected)
    ev = MultiLabelEvaluator({0: "a", 1: "b", 2: "c"})
    ev.process(torch.tensor(scores[:2]), torch.tensor(targets[:2]))
    ev.process(torch.tensor(scores[2:]), torch.tensor(targets[2:]))
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    log = logging.getLogger("dapt.engine.multilabel")
    old_level = log.level
    log.addHandler(handler)  # other tests may stop "dapt" from propagating to the root logger
    log.setLevel(logging.INFO)
    try:
        res = ev.evaluate()
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    assert res["mAP"] == pytest.approx(expected)
    assert any(f"* mAP: {expected:.1f}%" in m for m in records)
    ev.reset()
    with pytest.raises(ValueError):
        ev.evaluate()


def test_random_resized_crop_uses_rrcrop_scale_and_interpolation():
    cfg = _cfg()
    cfg.INPUT.TRANSFORMS = ("random_resized_crop",)
    cfg.INPUT.RRCROP_SCALE = (1.0, 1.0)  # the whole (square) image, resized
    img = Image.fromarray(np.random.RandomState(1).randint(0, 255, (32, 32, 3), np.uint8))
    out = build_transform(cfg, is_train=True)(img)
    from torchvision.transforms import functional as TF
    from torchvision.transforms import InterpolationMode

    ref = TF.to_tensor(TF.resize(img, [16, 16], interpolation=InterpolationMode.BICUBIC))
    assert torch.allclose(out, ref, atol=1e-6)
    lin = TF.to_tensor(TF.resize(img, [16, 16], interpolation=InterpolationMode.BILINEAR))
    assert not torch.allclose(out, lin, atol=1e-3)
