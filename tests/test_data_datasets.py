"""Every dataset on a miniature copy in its real layout: class names, labels, counts, few-shot
sizes and cache, base/new splits."""
import os
import shutil
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import data_fixtures as fx  # noqa: E402

from dapt.data import DataManager, build_dataset  # noqa: E402
from dapt.data.base import load_pickle  # noqa: E402


def _counts(items):
    return np.bincount([d.label for d in items]).tolist()


@pytest.mark.parametrize("name", sorted(fx.SPLIT_MAKERS))
def test_split_datasets_full(tmp_path, name):
    exp = fx.SPLIT_MAKERS[name](str(tmp_path))
    ds = build_dataset(fx.data_cfg(tmp_path, name))
    c = len(exp.classnames)
    assert ds.classnames == exp.classnames and ds.num_classes == c
    assert ds.lab2cname == dict(enumerate(exp.classnames))
    assert _counts(ds.train_x) == [exp.n_train] * c
    assert _counts(ds.val) == [exp.n_val] * c and _counts(ds.test) == [exp.n_test] * c
    for d in ds.train_x + ds.val + ds.test:
        assert os.path.isfile(d.impath) and d.impath.startswith(exp.image_base)
        assert d.classname == exp.classnames[d.label]
    assert ds.dataset_dir == exp.dataset_dir and ds.multi_label is False


@pytest.mark.parametrize("name", sorted(fx.SPLIT_MAKERS))
def test_split_datasets_fewshot_and_base_new(tmp_path, name):
    exp = fx.SPLIT_MAKERS[name](str(tmp_path))
    c = len(exp.classnames)
    ds = build_dataset(fx.data_cfg(tmp_path, name, shots=3, seed=2))
    assert _counts(ds.train_x) == [3] * c
    assert _counts(ds.val) == [min(3, 4, exp.n_val)] * c  # val few-shot = min(K, 4), capped by what exists
    assert _counts(ds.test) == [exp.n_test] * c  # test untouched
    cache = os.path.join(exp.dataset_dir, "split_fewshot", "shot_3-seed_2.pkl")
    saved = load_pickle(cache)
    assert [d.impath for d in saved["train"]] == [d.impath for d in ds.train_x]
    again = build_dataset(fx.data_cfg(tmp_path, name, shots=3, seed=2))
    assert [d.impath for d in again.train_x] == [d.impath for d in ds.train_x]

    m = (c + 1) // 2
    base = build_dataset(fx.data_cfg(tmp_path, name, shots=3, seed=2, subsample="base"))
    new = build_dataset(fx.data_cfg(tmp_path, name, shots=3, seed=2, subsample="new"))
    assert base.classnames == exp.classnames[:m] and new.classnames == exp.classnames[m:]
    assert _counts(base.train_x) == [3] * m and _counts(new.test) == [exp.n_test] * (c - m)
    # base/new pick from the same few-shot training set
    assert {d.impath for d in base.train_x} | {d.impath for d in new.train_x} == {d.impath for d in ds.train_x}


def test_caltech_split_built_from_folders(tmp_path):
    img = tmp_path / "caltech-101" / "101_ObjectCategories"
    for folder in ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "accordion"]:
        for i in range(10):
            fx.write_image(str(img / folder / f"image_{i:04d}.jpg"), seed=i)
    ds = build_dataset(fx.data_cfg(tmp_path, "Caltech101"))
    assert ds.classnames == ["face", "leopard", "accordion"]  # ignored folders gone, CoOp's renames
    assert _counts(ds.train_x) == [5] * 3 and _counts(ds.val) == [2] * 3 and _counts(ds.test) == [3] * 3
    assert (tmp_path / "caltech-101" / "split_zhou_Caltech101.json").is_file()
    again = build_dataset(fx.data_cfg(tmp_path, "Caltech101"))  # now read from the written split
    assert [d.impath for d in again.test] == [d.impath for d in ds.test]


def test_oxford_pets_split_built_from_annotations(tmp_path):
    ddir = tmp_path / "oxford_pets"
    lines = {"trainval.txt": [], "test.txt": []}
    for label, breed in enumerate(["Abyssinian", "american_bulldog"], start=1):
        for i in range(10):
            name = f"{breed}_{i}"
            fx.write_image(str(ddir / "images" / f"{name}.jpg"), seed=i)
            lines["trainval.txt" if i < 6 else "test.txt"].append(f"{name} {label} 1 1")
    (ddir / "annotations").mkdir()
    for k, v in lines.items():
        (ddir / "annotations" / k).write_text("\n".join(v) + "\n")
    ds = build_dataset(fx.data_cfg(tmp_path, "OxfordPets"))
    assert ds.classnames == ["abyssinian", "american_bulldog"]
    assert _counts(ds.val) == [1, 1] and _counts(ds.train_x) == [5, 5] and _counts(ds.test) == [4, 4]


def test_imagenet_full_fewshot_and_cache(tmp_path):
    exp = fx.make_imagenet(str(tmp_path))
    ds = build_dataset(fx.data_cfg(tmp_path, "ImageNet"))
    assert ds.classnames == fx.IMAGENET_NAMES and ds.val is None
    assert _counts(ds.train_x) == [exp.n_train] * 5 and _counts(ds.test) == [exp.n_test] * 5
    assert all("/images/val/" in d.impath for d in ds.test)
    assert os.path.isfile(os.path.join(exp.dataset_dir, "preprocessed.pkl"))
    # the image list now comes from preprocessed.pkl: listing the folders is not needed again
    shutil.rmtree(os.path.join(exp.dataset_dir, "images", "train", fx.IMAGENET_WNIDS[0]))
    ds = build_dataset(fx.data_cfg(tmp_path, "ImageNet", shots=2, seed=1))
    assert _counts(ds.train_x) == [2] * 5
    assert _counts(ds.val) == [2] * 5  # held out from train: min(K, 4) per class
    assert not {d.impath for d in ds.val} & {d.impath for d in ds.train_x}
    assert all("/images/train/" in d.impath for d in ds.val)
    assert os.path.isfile(os.path.join(exp.dataset_dir, "split_fewshot", "shot_2-seed_1.pkl"))
    base = build_dataset(fx.data_cfg(tmp_path, "ImageNet", shots=2, seed=1, subsample="base"))
    assert base.classnames == fx.IMAGENET_NAMES[:3] and _counts(base.test) == [exp.n_test] * 3


def test_imagenet_reads_coop_cache_without_val(tmp_path):
    import pickle

    exp = fx.make_imagenet(str(tmp_path))
    full = build_dataset(fx.data_cfg(tmp_path, "ImageNet"))
    few = [d for d in full.train_x if d.impath.endswith("train0.JPEG")]
    os.makedirs(os.path.join(exp.dataset_dir, "split_fewshot"))
    with open(os.path.join(exp.dataset_dir, "split_fewshot", "shot_1-seed_5.pkl"), "wb") as f:
        pickle.dump({"train": few}, f)  # CoOp's ImageNet cache holds only "train"
    ds = build_dataset(fx.data_cfg(tmp_path, "ImageNet", shots=1, seed=5))
    assert [d.impath for d in ds.train_x] == [d.impath for d in few]
    assert _counts(ds.val) == [1] * 5 and not {d.impath for d in ds.val} & {d.impath for d in few}


@pytest.mark.parametrize("which,name", [("v2", "ImageNetV2"), ("sketch", "ImageNetSketch"), ("a", "ImageNetA"),
                                        ("r", "ImageNetR")])
def test_imagenet_variants(tmp_path, which, name):
    exp = fx.make_imagenet_variant(str(tmp_path), which)
    ds = build_dataset(fx.data_cfg(tmp_path, name, shots=4, subsample="base"))  # both ignored, as in CoOp
    assert ds.classnames == exp.classnames and ds.num_classes == len(exp.classnames)
    assert sorted({d.label for d in ds.test}) == exp.labels
    assert len(ds.test) == exp.per_class * len(exp.labels) and ds.train_x == ds.test
    for d in ds.test:
        assert d.classname == exp.classnames[d.label]
        assert os.path.basename(os.path.dirname(d.impath)) != "README.txt"


@pytest.mark.parametrize("lists_in,with_npy", [("voc12", False), ("", True)])
def test_voc_multilabel(tmp_path, lists_in, with_npy):
    exp = fx.make_voc(str(tmp_path), lists_in=lists_in, with_npy=with_npy)
    ds = build_dataset(fx.data_cfg(tmp_path, "VOC12"))
    assert ds.multi_label is True and ds.num_classes == 20 and ds.classnames[10] == "table"
    assert len(ds.train_x) == len(exp.train_ids) and len(ds.test) == len(exp.test_ids) and ds.val is None
    for d in ds.train_x + ds.test:
        iid = os.path.basename(d.impath)[:-4]
        assert d.label == exp.labels[iid]  # part names (<part><name>head</name>) are not classes

    few = build_dataset(fx.data_cfg(tmp_path, "VOC12", shots=2, seed=1))
    per_class = np.array([d.label for d in few.train_x]).sum(0)
    assert (per_class >= 2).all()
    assert len({d.impath for d in few.train_x}) == len(few.train_x)
    assert not {d.impath for d in few.val} & {d.impath for d in few.train_x}

    base = build_dataset(fx.data_cfg(tmp_path, "VOC12", subsample="base"))
    new = build_dataset(fx.data_cfg(tmp_path, "VOC12", subsample="new"))
    assert base.classnames == ds.classnames[:10] and new.classnames == ds.classnames[10:]
    n_base = sum(any(v[:10]) for v in (exp.labels[i] for i in exp.test_ids))
    assert len(base.test) == n_base
    both = [d for d in new.train_x if os.path.basename(d.impath)[:-4] in exp.labels
            and exp.labels[os.path.basename(d.impath)[:-4]][0] and exp.labels[os.path.basename(d.impath)[:-4]][14]]
    assert len(both) == 1 and both[0].label == exp.labels[os.path.basename(both[0].impath)[:-4]][10:]

    dm = DataManager(fx.data_cfg(tmp_path, "VOC12", subsample="new"))
    b = next(iter(dm.test_loader))
    assert b["label"].dtype == torch.float32 and b["label"].shape[1] == 10


def test_voc_missing_list_names_the_fix(tmp_path):
    exp = fx.make_voc(str(tmp_path))
    os.remove(exp.split_path)
    with pytest.raises(FileNotFoundError, match="train_aug_id.txt"):
        build_dataset(fx.data_cfg(tmp_path, "VOC12"))


def test_build_dataset_errors(tmp_path):
    with pytest.raises(KeyError, match="OxfordPets"):
        build_dataset(fx.data_cfg(tmp_path, "OxfordPet"))
    with pytest.raises(FileNotFoundError, match="oxford_pets"):
        build_dataset(fx.data_cfg(tmp_path, "OxfordPets"))
    fx.make_dtd(str(tmp_path))
    os.remove(os.path.join(str(tmp_path), "dtd", "split_zhou_DescribableTextures.json"))
    shutil.rmtree(os.path.join(str(tmp_path), "dtd", "images"))
    with pytest.raises(FileNotFoundError):
        build_dataset(fx.data_cfg(tmp_path, "DescribableTextures"))


def test_build_dataset_imports_every_module(tmp_path, monkeypatch):
    import dapt.data.datasets as pkg

    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "my_extra_set.py").write_text(
        "from dapt.data.base import DatasetBase, Datum\n"
        "from dapt.data.registry import DATASET_REGISTRY\n"
        "@DATASET_REGISTRY.register()\n"
        "class MyExtraSet(DatasetBase):\n"
        "    def __init__(self, cfg):\n"
        "        d = [Datum(impath='x.png', label=0, classname='thing')]\n"
        "        super().__init__(train_x=d, test=d)\n")
    monkeypatch.setattr(pkg, "__path__", list(pkg.__path__) + [str(tmp_path / "mods")])
    ds = build_dataset(fx.data_cfg(tmp_path, "MyExtraSet"))
    assert ds.classnames == ["thing"]


def test_voc_reads_official_fewshot_cache(tmp_path):
    """The official release caches {"train": [Datum with a numpy 20-d label]} only."""
    import pickle

    from dapt.data.base import Datum

    exp = fx.make_voc(str(tmp_path))
    img = os.path.join(exp.image_base, exp.train_ids[-1] + ".jpg")  # a two-class image
    vec = np.array(exp.labels[exp.train_ids[-1]], dtype=np.float32)
    os.makedirs(os.path.join(exp.dataset_dir, "split_fewshot"))
    with open(os.path.join(exp.dataset_dir, "split_fewshot", "shot_1-seed_1.pkl"), "wb") as f:
        pickle.dump({"train": [Datum(impath=img, label=vec, classname="x")]}, f)
    ds = build_dataset(fx.data_cfg(tmp_path, "VOC12", shots=1, seed=1))
    assert [d.impath for d in ds.train_x] == [img] and ds.train_x[0].label == vec.astype(int).tolist()
    assert ds.train_x[0].classname == "boat, bottle"
    assert img not in {d.impath for d in ds.val} and len(ds.val) >= 19
