"""Bad input on the data side: crafted pickles in $DATA never run code, 0/255 and odd masks, classes
without training images. Each case builds the bad input on disk and runs the real reader (the dataset
loader, ``train.py`` or ``tools/check_data.py``)."""
import io
import json
import logging
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from data_fixtures import data_cfg, make_imagenet, make_oxford_pets, make_voc
from dapt.data.base import Datum
from dapt.data.registry import DATASET_REGISTRY, import_dataset_modules
from dapt.decouple.masks import MaskStore
from dapt.decouple.wrapper import StoreMasks

REPO = Path(__file__).resolve().parents[1]
import_dataset_modules()


# ------------------------------------------------------------------------------------------ payloads
def _s(text: str) -> bytes:
    """A protocol-0 string literal."""
    return ("S" + repr(str(text)) + "\n").encode()


def payloads(tmp_path, marker):
    """name -> (pickle bytes that would create ``marker`` when unpickled without restriction,
    the global the refusal must name)."""
    code = f"open({str(marker)!r}, 'w').close()"
    modname = f"dapt_marker_{abs(hash(str(marker))) % 10**8}"
    (tmp_path / f"{modname}.py").write_text(code + "\n")  # importing it creates the marker

    class Reduce:
        def __init__(self, fn, *args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return self.fn, self.args

    from numpy.testing._private import utils as np_test_utils

    return {
        "os.system": (b"cos\nsystem\n(" + _s(f"touch {marker}") + b"tR.", "os.system"),
        "posix.system/p5": (pickle.dumps(Reduce(os.system, f"touch {marker}"), protocol=5), "system"),
        "builtins.eval": (b"cbuiltins\neval\n(" + _s(code) + b"tR.", "builtins.eval"),
        "builtins.exec/p4": (pickle.dumps(Reduce(exec, code), protocol=4), "builtins.exec"),
        "builtins.getattr": (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(" + _s("os") + b"tR" + _s("system")
                             + b"tR(" + _s(f"touch {marker}") + b"tR.", "builtins.getattr"),
        "builtins.__import__": (b"cbuiltins\n__import__\n(" + _s(modname) + b"tR.", "builtins.__import__"),
        "numpy runstring": (pickle.dumps(Reduce(np_test_utils.runstring, code, {}), protocol=2), "runstring"),
        "numpy.load": (b"cnumpy\nload\n(" + _s(str(marker)) + b"tR.", "numpy.load"),
        # numpy.ndarray called directly: an object array over raw bytes (pointers) -- never allowed
        "numpy.ndarray call": (b"cnumpy\nndarray\n((I1\ntcnumpy\ndtype\n(" + _s("O") + b"tR" + _s("A" * 8)
                               + b"tR.", "numpy.ndarray"),
        # a legitimate-looking cache with one bad object inside
        "nested": (pickle.dumps({"train": [Datum("/x/a.jpg", 0, 0, "a"), Reduce(os.system, f"touch {marker}")]}),
                   "system"),
        "dassl lookalike": (b"cdassl.evil\nDatum\n(tR.", "dassl.evil.Datum"),
    }


@pytest.fixture
def evil(tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    monkeypatch.syspath_prepend(str(tmp_path))  # where the __import__ payload's module sits
    return marker, payloads(tmp_path, marker)


CASES = ["os.system", "posix.system/p5", "builtins.eval", "builtins.exec/p4", "builtins.getattr",
         "builtins.__import__", "numpy runstring", "numpy.load", "numpy.ndarray call", "nested", "dassl lookalike"]


def _one_line(msg: str, path) -> None:
    assert "\n" not in msg and str(path) in msg


def npy_with_pickle(blob: bytes) -> bytes:
    """A .npy file of a 0-d object array whose pickled payload is ``blob``."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
    return f.getvalue() + blob


# ------------------------------------------------------------------------------------------ readers
@pytest.mark.parametrize("case", CASES)
def test_fewshot_cache_payload_refused(tmp_path, evil, case):
    marker, cases = evil
    blob, culprit = cases[case]
    exp = make_oxford_pets(tmp_path / "data")
    cache = Path(exp.dataset_dir) / "split_fewshot" / "shot_2-seed_1.pkl"
    cache.parent.mkdir()
    cache.write_bytes(blob)
    with pytest.raises(ValueError) as e:
        DATASET_REGISTRY.get("OxfordPets")(data_cfg(tmp_path / "data", "OxfordPets", shots=2))
    msg = str(e.value)
    _one_line(msg, cache)
    if case != "numpy.ndarray call":
        assert culprit in msg and "delete it" in msg
    else:
        assert "numpy.ndarray" in msg
    assert not marker.exists()
    assert cache.read_bytes() == blob  # the evidence is left in place, not overwritten


@pytest.mark.parametrize("case", ["os.system", "builtins.getattr", "builtins.__import__", "numpy runstring"])
def test_imagenet_preprocessed_payload_refused(tmp_path, evil, case):
    marker, cases = evil
    blob, culprit = cases[case]
    exp = make_imagenet(tmp_path / "data", n_train=1, n_val=1)
    pre = Path(exp.dataset_dir) / "preprocessed.pkl"
    pre.write_bytes(blob)
    with pytest.raises(ValueError) as e:
        DATASET_REGISTRY.get("ImageNet")(data_cfg(tmp_path / "data", "ImageNet"))
    _one_line(str(e.value), pre)
    assert culprit in str(e.value) and not marker.exists()


@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "builtins.__import__", "numpy runstring",
                                  "numpy.ndarray call"])
def test_voc_cls_labels_npy_payload_refused(tmp_path, evil, case):
    marker, cases = evil
    blob, culprit = cases[case]
    exp = make_voc(tmp_path / "data")
    npy = Path(exp.dataset_dir) / "voc12" / "cls_labels.npy"
    npy.write_bytes(npy_with_pickle(blob))
    with pytest.raises(ValueError) as e:
        DATASET_REGISTRY.get("VOC12")(data_cfg(tmp_path / "data", "VOC12"))
    _one_line(str(e.value), npy)
    assert culprit.split(".")[-1] in str(e.value) and not marker.exists()


def test_check_data_cli_refuses_every_crafted_file(tmp_path, evil):
    """tools/check_data.py, the first thing users run on downloaded data: one crafted file per reader."""
    marker, cases = evil
    root = tmp_path / "data"
    pets = make_oxford_pets(root)
    cache = Path(pets.dataset_dir) / "split_fewshot" / "shot_1-seed_1.pkl"
    cache.parent.mkdir()
    cache.write_bytes(cases["os.system"][0])
    pre = Path(make_imagenet(root, n_train=1, n_val=1).dataset_dir) / "preprocessed.pkl"
    pre.write_bytes(cases["builtins.eval"][0])
    npy = Path(make_voc(root).dataset_dir) / "voc12" / "cls_labels.npy"
    npy.write_bytes(npy_with_pickle(cases["numpy runstring"][0]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, str(REPO / "tools" / "check_data.py"), "--root", str(root), "--dataset",
                        "OxfordPets", "ImageNet", "VOC12", "--quick"], capture_output=True, text=True, env=env,
                       timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out and not marker.exists()
    for path, culprit in ((cache, "os.system"), (pre, "builtins.eval"), (npy, "runstring")):
        lines = [ln for ln in out.splitlines() if str(path) in ln]
        assert lines and culprit in lines[0], out
    assert "0 of 3 datasets OK" in out


def _train_cmd(root, out, *extra, trainer="CoOp", dataset="oxford_pets", flags=()):
    cfg = {"CoOp": "configs/trainers/CoOp/vit_b16_ep50.yaml", "MaPLe": "configs/trainers/MaPLe/dapt_vit_b16_t.yaml",
           "ZeroshotCLIP": "configs/trainers/CoOp/vit_b16_ep50.yaml"}[trainer]
    return [sys.executable, str(REPO / "train.py"), "--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / f"configs/datasets/{dataset}.yaml"), "--config-file",
            str(REPO / cfg), "--output-dir", str(out), *flags, "MODEL.BACKBONE.NAME", "dapt-tiny-vit",
            "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1",
            "DATALOADER.NUM_WORKERS", "0", *extra]


def _run(cmd, extra_path=()):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([*map(str, extra_path), str(REPO), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    return r, r.stdout + r.stderr


def test_train_py_refuses_crafted_fewshot_cache(tmp_path, evil):
    marker, cases = evil
    root = tmp_path / "data"
    pets = make_oxford_pets(root)
    cache = Path(pets.dataset_dir) / "split_fewshot" / "shot_2-seed_1.pkl"
    cache.parent.mkdir()
    blob = cases["builtins.__import__"][0]
    cache.write_bytes(blob)
    split_before = Path(pets.split_path).read_bytes()
    r, out = _run(_train_cmd(root, tmp_path / "out", "DATASET.NUM_SHOTS", "2"), extra_path=[tmp_path])
    assert r.returncode not in (0, None), out
    assert "Traceback" not in out and not marker.exists()
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and str(cache) in err[0] and "builtins.__import__" in err[0], r.stderr
    assert cache.read_bytes() == blob and Path(pets.split_path).read_bytes() == split_before


# ------------------------------------------------------------------------------------------ legitimate caches
def _fake_dassl_datum_pickle(items, protocol):
    """Pickle (impath, label, classname) rows as Dassl's Datum (dassl.data.datasets.base_dataset)."""
    names = ["dassl", "dassl.data", "dassl.data.datasets", "dassl.data.datasets.base_dataset"]
    mod = types.ModuleType(names[-1])

    class FakeDatum:
        def __init__(self, impath, label, classname):
            self._impath, self._label, self._domain, self._classname = impath, label, 0, classname

    FakeDatum.__module__, FakeDatum.__qualname__, FakeDatum.__name__ = names[-1], "Datum", "Datum"
    mod.Datum = FakeDatum
    saved = {n: sys.modules.get(n) for n in names}
    for n in names:
        sys.modules[n] = mod if n == names[-1] else types.ModuleType(n)
    try:
        return pickle.dumps({"train": [FakeDatum(*row) for row in items]}, protocol=protocol)
    finally:
        for n, m in saved.items():
            if m is None:
                del sys.modules[n]
            else:
                sys.modules[n] = m


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_dassl_cache_with_numpy_labels_still_loads(tmp_path, protocol):
    """Caches as CoOp/Dassl and the official DAPT VOC release write them (numpy labels included) load,
    under every pickle protocol."""
    exp = make_voc(tmp_path / "data")
    img_dir = exp.image_base
    rows = []
    for iid in exp.train_ids[:3]:
        rows.append((f"/elsewhere/voc12data/VOCdevkit/VOC2012/JPEGImages/{iid}.jpg",
                     np.asarray(exp.labels[iid], dtype=np.float32), "x"))
    cache = Path(exp.dataset_dir) / "split_fewshot" / "shot_1-seed_1.pkl"
    cache.parent.mkdir()
    cache.write_bytes(_fake_dassl_datum_pickle(rows, protocol))
    from dapt.data.base import load_pickle

    data = load_pickle(str(cache))
    for d, (impath, lab, name) in zip(data["train"], rows):
        assert isinstance(d, Datum) and d.impath == impath and d.classname == name
        np.testing.assert_array_equal(d.label, lab)
    ds = DATASET_REGISTRY.get("VOC12")(data_cfg(tmp_path / "data", "VOC12", shots=1))
    assert [d.impath for d in ds.train_x] == [os.path.join(img_dir, f"{i}.jpg") for i in exp.train_ids[:3]]
    assert [d.label for d in ds.train_x] == [exp.labels[i] for i in exp.train_ids[:3]]


def test_numpy1_style_cls_labels_npy_loads(tmp_path):
    """cls_labels.npy as numpy 1.x wrote it (globals under numpy.core) reads through the allow-list."""
    exp = make_voc(tmp_path / "data", with_npy=True)
    npy = Path(exp.dataset_dir) / "voc12" / "cls_labels.npy"
    table = np.load(npy, allow_pickle=True).item()  # our own fixture file
    blob = pickle.dumps(np.asanyarray(table), protocol=3)  # numpy 1.x's np.save: protocol 3, GLOBAL opcodes
    assert b"numpy._core.multiarray\n_reconstruct\n" in blob
    npy.write_bytes(npy_with_pickle(blob.replace(b"numpy._core.", b"numpy.core.")))
    ds = DATASET_REGISTRY.get("VOC12")(data_cfg(tmp_path / "data", "VOC12"))
    assert {os.path.basename(d.impath)[:-4]: d.label for d in ds.test} == {i: exp.labels[i] for i in exp.test_ids}


def test_cache_cannot_rebind_datum_class(tmp_path):
    """BUILD with slot state on the allowed class itself (Datum.label = ...) is refused."""
    blob = b"cdapt.data.base\nDatum\n(N(" + _s("label") + _s("hijacked") + b"dtb."  # BUILD(Datum, (None, {...}))
    p = tmp_path / "c.pkl"
    p.write_bytes(blob)
    from dapt.data.base import load_pickle

    with pytest.raises(ValueError) as e:
        load_pickle(str(p))
    _one_line(str(e.value), p)
    assert isinstance(Datum.label, property)


# ------------------------------------------------------------------------------------------ masks
def _mask_store(tmp_path, masks, img_size=(8, 8)):
    """Images (w, h) = img_size under tmp/images, masks written raw (no conversion) into masks/seem."""
    root = tmp_path / "images"
    store = MaskStore(str(tmp_path), str(root), source="seem")
    imgs = []
    for i, m in enumerate(masks):
        p = root / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((img_size[1], img_size[0], 3), np.uint8)).save(p)
        mp = Path(store.path(str(p)))
        mp.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(m, np.uint8), mode="L").save(mp)
        imgs.append(str(p))
    return store, imgs


def _square(v_fg, v_bg=0, n=8):
    m = np.full((n, n), v_bg, np.uint8)
    m[2:6, 1:5] = v_fg
    return m


def test_binary_0_255_store_without_manifest_is_refused_then_decoded(tmp_path):
    store, imgs = _mask_store(tmp_path, [_square(255) for _ in range(3)])
    with pytest.raises(ValueError) as e:
        StoreMasks(store, imgs)
    assert "\n" not in str(e.value) and "DAPT.MASK.DECODE binary_0_255" in str(e.value) and store.root in str(e.value)
    binary = MaskStore(str(tmp_path), str(tmp_path / "images"), source="seem", decode="binary_0_255")
    sm = StoreMasks(binary, imgs)
    np.testing.assert_array_equal(sm(0, (8, 8)), (_square(255) == 255).astype(np.uint8))


def test_manifest_encoding_must_match_decode(tmp_path):
    store, imgs = _mask_store(tmp_path, [_square(255) for _ in range(2)])
    store.write_manifest(2, generator="test", encoding="binary_0bg_255fg")
    assert json.loads((Path(store.root) / "manifest.json").read_text())["encoding"] == "binary_0bg_255fg"
    with pytest.raises(ValueError, match="set DAPT.MASK.DECODE binary_0_255"):
        StoreMasks(store, imgs)
    ok = MaskStore(str(tmp_path), str(tmp_path / "images"), source="seem", decode="binary_0_255")
    assert StoreMasks(ok, imgs)(1, (8, 8)).sum() == 16
    store.write_manifest(2, generator="test")  # label map declared, binary decode asked for
    with pytest.raises(ValueError, match="set DAPT.MASK.DECODE label_map"):
        StoreMasks(ok, imgs)


def test_decode_is_per_store_never_per_file(tmp_path):
    """A store mixing 0/1 label maps and a 0/255 file: one decode for all (255 stays void), no guessing."""
    store, imgs = _mask_store(tmp_path, [_square(1), _square(1), _square(255)])
    sm = StoreMasks(store, imgs)
    assert sm(0, (8, 8)).sum() == 16 and sm(2, (8, 8)).sum() == 0


def test_one_bit_png_masks_read_as_binary(tmp_path):
    store, imgs = _mask_store(tmp_path, [_square(1)])
    Image.fromarray(_square(255)).convert("1").save(store.path(imgs[0]))
    assert Image.open(store.path(imgs[0])).mode == "1"
    np.testing.assert_array_equal(StoreMasks(store, imgs)(0, (8, 8)), _square(1))


def test_degenerate_masks_warn_once_with_counts(tmp_path, caplog):
    masks = [np.zeros((8, 8))] * 3 + [np.ones((8, 8))] * 2 + [_square(1)]
    store, imgs = _mask_store(tmp_path, masks)
    with caplog.at_level(logging.WARNING, logger="dapt"):
        StoreMasks(store, imgs)
        StoreMasks(store, imgs)  # a second build in the same run does not repeat it
    warns = [r.getMessage() for r in caplog.records if "degenerate" in r.getMessage()]
    assert len(warns) == 1 and "of 6 sampled masks 3 are (almost) all background and 2" in warns[0]
    healthy, imgs2 = _mask_store(tmp_path / "ok", [_square(1)] * 4)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dapt"):
        StoreMasks(healthy, imgs2)
    assert not caplog.records


def test_misshapen_masks_warn_once(tmp_path, caplog):
    store, imgs = _mask_store(tmp_path, [_square(1, n=8)] * 3, img_size=(16, 8))  # 8x8 masks on 16x8 images
    with caplog.at_level(logging.WARNING, logger="dapt"):
        StoreMasks(store, imgs)
        StoreMasks(store, imgs)
    warns = [r.getMessage() for r in caplog.records if "aspect ratio" in r.getMessage()]
    assert len(warns) == 1 and warns[0].startswith("3 of 3 sampled masks") and "image 16x8" in warns[0]
    same, imgs2 = _mask_store(tmp_path / "ok", [np.kron(_square(1), np.ones((2, 4)))] * 2, img_size=(8, 4))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dapt"):
        StoreMasks(same, imgs2)  # 32x16 masks on 8x4 images: same aspect, any resolution is fine
    assert not [r for r in caplog.records if "aspect ratio" in r.getMessage()]


def test_train_py_dapt_s_refuses_0_255_store(tmp_path):
    root = tmp_path / "data"
    pets = make_oxford_pets(root)
    store = MaskStore(pets.dataset_dir, pets.image_base, source="gt")
    split = json.loads(Path(pets.split_path).read_text())
    for rel, _, _ in split["train"]:
        p = Path(store.path(os.path.join(pets.image_base, rel)))
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_square(255)).save(p)
    r, out = _run(_train_cmd(root, tmp_path / "out", "DAPT.MASK.STORE", "gt", "DATASET.NUM_SHOTS", "1",
                             trainer="MaPLe", flags=["--mode", "dapt-s"]))
    assert r.returncode not in (0, None) and "Traceback" not in out, out
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and "DAPT.MASK.DECODE binary_0_255" in err[0] and store.root in err[0], r.stderr


# ------------------------------------------------------------------------------------------ labels
def _pets_without_train_images_of(root, empty_label):
    exp = make_oxford_pets(root)
    split = json.loads(Path(exp.split_path).read_text())
    split["train"] = [e for e in split["train"] if e[1] != empty_label]
    Path(exp.split_path).write_text(json.dumps(split))
    return exp


def test_class_without_training_images_keeps_names(tmp_path):
    exp = _pets_without_train_images_of(tmp_path / "data", 1)
    ds = DATASET_REGISTRY.get("OxfordPets")(data_cfg(tmp_path / "data", "OxfordPets"))
    assert ds.classnames == exp.classnames and ds.num_classes == 5
    assert ds.lab2cname == dict(enumerate(exp.classnames))
    assert 1 not in {d.label for d in ds.train_x}
    assert all(ds.classnames[d.label] == d.classname for d in ds.test)


@pytest.mark.parametrize("trainer", ["ZeroshotCLIP", "MaPLe"])
def test_methods_see_the_right_name_for_every_label(tmp_path, tiny_name, tokenizer, trainer):
    from dapt.engine.build import build_trainer

    exp = _pets_without_train_images_of(tmp_path / "data", 1)
    cfg = data_cfg(tmp_path / "data", "OxfordPets")
    cfg.TRAINER.NAME = trainer
    cfg.MODEL.BACKBONE.NAME = tiny_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.USE_CUDA = False
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 2
    torch.manual_seed(0)
    t = build_trainer(cfg)
    true = [n.replace("_", " ") for n in exp.classnames]
    assert len(t.model.classnames) == 5
    for k in range(5):
        assert t.model.classnames[k] == true[k]
    if trainer == "ZeroshotCLIP":  # row k of the class features is the prompt of class k's true name
        clip = t.model.clip_model
        with torch.no_grad():
            ref = clip.encode_text(tokenizer([f"a photo of a {n}, a type of pet." for n in true]))
        np.testing.assert_allclose(F.normalize(t.model.text_features, dim=-1).numpy(),
                                   F.normalize(ref.float(), dim=-1).numpy(), atol=1e-5)


def test_label_without_any_image_or_two_names_refused(tmp_path):
    exp = make_oxford_pets(tmp_path / "data")
    split = json.loads(Path(exp.split_path).read_text())
    for key in split:
        split[key] = [e for e in split[key] if e[1] != 2]
    Path(exp.split_path).write_text(json.dumps(split))
    with pytest.raises(ValueError) as e:
        DATASET_REGISTRY.get("OxfordPets")(data_cfg(tmp_path / "data", "OxfordPets"))
    _one_line(str(e.value), exp.split_path)
    assert "label(s) [2]" in str(e.value)
    split = json.loads(Path(exp.split_path).read_text())
    split["test"].append([split["test"][0][0], 0, "not_abyssinian"])
    split["test"].extend([e[0], 2, "basset_hound"] for e in split["train"][:1])
    Path(exp.split_path).write_text(json.dumps(split))
    with pytest.raises(ValueError, match="label 0 is named both 'abyssinian' and 'not_abyssinian'"):
        DATASET_REGISTRY.get("OxfordPets")(data_cfg(tmp_path / "data", "OxfordPets"))


def test_train_py_label_gap_one_line(tmp_path):
    exp = make_oxford_pets(tmp_path / "data")
    split = json.loads(Path(exp.split_path).read_text())
    for key in split:
        split[key] = [e for e in split[key] if e[1] != 3]
    Path(exp.split_path).write_text(json.dumps(split))
    r, out = _run(_train_cmd(tmp_path / "data", tmp_path / "out", trainer="ZeroshotCLIP", flags=["--eval-only"]))
    assert r.returncode not in (0, None) and "Traceback" not in out, out
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and exp.split_path in err[0] and "label(s) [3]" in err[0], r.stderr
