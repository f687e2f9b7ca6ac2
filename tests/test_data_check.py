"""tools/check_data.py on miniature datasets: OK rows, a deleted image, a missing split file, an
unreadable image, a wrong class count, a stale few-shot cache."""
import importlib
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import data_fixtures as fx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check_data():
    return importlib.import_module("dapt.tools.check_data")


@pytest.fixture
def small_counts(monkeypatch):
    """The miniature copies have a few classes; tell the checker so."""
    from dapt.data.registry import DATASET_REGISTRY, import_dataset_modules

    import_dataset_modules()
    for name, n in (("OxfordPets", 5), ("EuroSAT", 5), ("VOC12", 20), ("ImageNetA", 4)):
        monkeypatch.setattr(DATASET_REGISTRY.get(name), "num_classes_expected", n)


def run(check_data, capsys, *args):
    rc = check_data.main(list(args))
    return rc, capsys.readouterr().out


def test_all_ok(tmp_path, check_data, capsys, small_counts):
    fx.make_oxford_pets(str(tmp_path))
    fx.make_eurosat(str(tmp_path))
    fx.make_voc(str(tmp_path))
    fx.make_imagenet_variant(str(tmp_path), "a")
    rc, out = run(check_data, capsys, "--root", str(tmp_path), "--dataset", "OxfordPets", "EuroSAT", "VOC12",
                  "ImageNetA", "--workers", "2")
    assert rc == 0, out
    rows = [ln for ln in out.splitlines() if ln and not ln.startswith(" ")]
    assert rows[0].split()[:2] == ["OxfordPets", "OK"] and "5 classes, train 25 / val 10 / test 15" in rows[0]
    assert rows[2].split()[:2] == ["VOC12", "OK"] and rows[3].split()[:2] == ["ImageNetA", "OK"]
    assert "4 of 4 datasets OK" in out


def test_deleted_image_is_named(tmp_path, check_data, capsys, small_counts):
    exp = fx.make_oxford_pets(str(tmp_path))
    victim = os.path.join(exp.image_base, "Bengal_test1.jpg")
    os.remove(victim)
    rc, out = run(check_data, capsys, "--root", str(tmp_path), "--dataset", "OxfordPets")
    assert rc == 1
    assert out.splitlines()[0].split()[:2] == ["OxfordPets", "PROBLEM"]
    assert "1 of 50 images missing" in out and victim in out and "fix:" in out
    rc, out = run(check_data, capsys, "--root", str(tmp_path), "--dataset", "OxfordPets", "--quick")
    assert rc == 1 and victim in out


def test_missing_split_file_is_named(tmp_path, check_data, capsys, small_counts):
    exp = fx.make_eurosat(str(tmp_path))
    os.remove(exp.split_path)
    rc, out = run(check_data, capsys, "--root", str(tmp_path), "--dataset", "EuroSAT")
    assert rc == 1 and "split_zhou_EuroSAT.json" in out and "PROBLEM" in out
    assert not os.path.exists(exp.split_path)  # the checker writes nothing


def test_missing_dataset_folder_and_unknown_name(tmp_path, check_data, capsys):
    rc, out = run(check_data, capsys, "--root", str(tmp_path), "--dataset", "Food101", "Food102")
    assert rc == 1
    assert os.path.join(str(tmp_path), "food-101") in out
    assert "did you mean 'Food101'" in out


def test_unreadable_image_and_class_count(tmp_path, check_data, capsys, monkeypatch, small_counts):
    exp = fx.make_oxford_pets(str(tmp_path))
    broken = os.path.join(exp.image_base, "Pug_train0.jpg")
    with open(broken, "wb") as f:
        f.write(b"not an image")
    from dapt.data.registry import DATASET_REGISTRY

    monkeypatch.setattr(DATASET_REGISTRY.get("OxfordPets"), "num_classes_expected", 37)
    rc, out = run(check_data, capsys, "--root", str(tmp_path), "--dataset", "OxfordPets")
    assert rc == 1
    assert "1 images cannot be opened" in out and broken in out
    assert "5 classes, expected 37" in out


def test_stale_fewshot_cache(tmp_path, check_data, capsys, small_counts):
    from dapt.data import build_dataset

    exp = fx.make_oxford_pets(str(tmp_path))
    ds = build_dataset(fx.data_cfg(tmp_path, "OxfordPets", shots=1, seed=1))
    os.remove(ds.train_x[0].impath)
    rc, out = run(check_data, capsys, "--root", str(tmp_path), "--dataset", "OxfordPets")
    assert rc == 1 and "shot_1-seed_1.pkl" in out and ds.train_x[0].impath in out
    assert exp.dataset_dir in out
