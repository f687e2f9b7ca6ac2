"""Miniature copies of the benchmark datasets in their real $DATA layouts (tiny images, real split
formats), generated in code. Each ``make_*`` returns what a correct loader must report."""
import json
import os
from types import SimpleNamespace

import numpy as np
from PIL import Image

N_TRAIN, N_VAL, N_TEST = 5, 2, 3


def write_image(path, seed=0, size=(8, 6)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.RandomState(seed)
    arr = rng.randint(0, 255, (size[1], size[0], 3), np.uint8)
    fmt = "PNG" if path.lower().endswith(".png") else "JPEG"
    Image.fromarray(arr).save(path, format=fmt)


def _split_dataset(root, folder, image_subdir, split_file, classnames, relpath, prefix="image"):
    """A split_zhou_*.json dataset: N_TRAIN/N_VAL/N_TEST images per class at relpath(c, name, i)."""
    ddir = os.path.join(root, folder)
    base = os.path.join(ddir, image_subdir) if prefix == "image" else ddir
    split = {"train": [], "val": [], "test": []}
    k = 0
    for label, name in enumerate(classnames):
        for key, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
            for i in range(n):
                rel = relpath(label, name, f"{key}{i}")
                write_image(os.path.join(base, rel), seed=k)
                k += 1
                split[key].append([rel, label, name])
    with open(os.path.join(ddir, split_file), "w") as f:
        json.dump(split, f)
    return SimpleNamespace(classnames=list(classnames), n_train=N_TRAIN, n_val=N_VAL, n_test=N_TEST,
                           dataset_dir=ddir, split_path=os.path.join(ddir, split_file), image_base=base)


def make_oxford_pets(root):
    names = ["abyssinian", "american_bulldog", "basset_hound", "bengal", "pug"]
    return _split_dataset(root, "oxford_pets", "images", "split_zhou_OxfordPets.json", names,
                          lambda y, n, i: f"{n.title()}_{i}.jpg")


def make_caltech101(root):
    names = ["accordion", "airplane", "face", "leopard", "yin_yang"]
    return _split_dataset(root, "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", names,
                          lambda y, n, i: f"{n}/image_{i}.jpg")


def make_stanford_cars(root):
    names = ["2012 AM General Hummer SUV", "2012 Acura RL Sedan", "2007 BMW X5 SUV", "1994 Audi V8 Sedan"]
    return _split_dataset(root, "stanford_cars", "", "split_zhou_StanfordCars.json", names,
                          lambda y, n, i: f"cars_{'test' if i.startswith('test') else 'train'}/{y:03d}{i}.jpg",
                          prefix="dataset")


def make_oxford_flowers(root):
    names = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea"]
    return _split_dataset(root, "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json", names,
                          lambda y, n, i: f"image_{y}{i}.jpg")


def make_food101(root):
    names = ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "waffles"]
    return _split_dataset(root, "food-101", "images", "split_zhou_Food101.json", names,
                          lambda y, n, i: f"{n}/{i}.jpg")


def make_sun397(root):
    names = ["abbey", "outdoor apartment building", "indoor bakery shop", "beach"]
    folders = ["a/abbey", "a/apartment_building/outdoor", "b/bakery/shop", "b/beach"]
    return _split_dataset(root, "sun397", "SUN397", "split_zhou_SUN397.json", names,
                          lambda y, n, i: f"{folders[y]}/sun_{i}.jpg")


def make_ucf101(root):
    names = ["Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Yo_Yo"]
    return _split_dataset(root, "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", names,
                          lambda y, n, i: f"{n}/v_{n.replace('_', '')}_{i}.jpg")


def make_dtd(root):
    names = ["banded", "blotchy", "braided", "bubbly", "zigzagged"]
    return _split_dataset(root, "dtd", "images", "split_zhou_DescribableTextures.json", names,
                          lambda y, n, i: f"{n}/{n}_{i}.jpg")


def make_eurosat(root):
    folders = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "SeaLake"]
    names = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Sea or Lake"]
    return _split_dataset(root, "eurosat", "2750", "split_zhou_EuroSAT.json", names,
                          lambda y, n, i: f"{folders[y]}/{folders[y]}_{i}.jpg")


def make_fgvc_aircraft(root):
    names = ["707-320", "A300B4", "Cessna 172", "F-16A/B"]
    ddir = os.path.join(root, "fgvc_aircraft")
    os.makedirs(ddir, exist_ok=True)
    with open(os.path.join(ddir, "variants.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    k = 0
    for key, n in (("train", N_TRAIN), ("val", N_VAL), ("test", N_TEST)):
        lines = []
        for y, name in enumerate(names):
            for i in range(n):
                imid = f"{1000000 + k}"
                write_image(os.path.join(ddir, "images", imid + ".jpg"), seed=k)
                lines.append(f"{imid} {name}")
                k += 1
        with open(os.path.join(ddir, f"images_variant_{key}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return SimpleNamespace(classnames=names, n_train=N_TRAIN, n_val=N_VAL, n_test=N_TEST, dataset_dir=ddir,
                           split_path=os.path.join(ddir, "images_variant_test.txt"), image_base=os.path.join(ddir, "images"))


IMAGENET_WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]
IMAGENET_NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark"]


def write_classnames(path, wnids, names):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for w, n in zip(wnids, names):
            f.write(f"{w} {n}\n")


def make_imagenet(root, n_train=6, n_val=3):
    ddir = os.path.join(root, "imagenet")
    write_classnames(os.path.join(ddir, "classnames.txt"), IMAGENET_WNIDS, IMAGENET_NAMES)
    k = 0
    for split, n in (("train", n_train), ("val", n_val)):
        for w in IMAGENET_WNIDS:
            for i in range(n):
                write_image(os.path.join(ddir, "images", split, w, f"{w}_{split}{i}.JPEG"), seed=k)
                k += 1
    return SimpleNamespace(classnames=IMAGENET_NAMES, n_train=n_train, n_test=n_val, dataset_dir=ddir,
                           split_path=os.path.join(ddir, "classnames.txt"), image_base=os.path.join(ddir, "images"))


def make_imagenet_variant(root, which):
    """imagenetv2 (folders 0..999), imagenet-sketch (wnid folders), -adversarial / -rendition
    (a subset of wnid folders plus README.txt)."""
    all_wnids = [f"n{i:08d}" for i in range(1000)]
    all_names = [f"class {i}" for i in range(1000)]
    all_wnids[:5], all_names[:5] = IMAGENET_WNIDS, IMAGENET_NAMES
    folder, sub = {"v2": ("imagenetv2", "imagenetv2-matched-frequency-format-val"),
                   "sketch": ("imagenet-sketch", "images"),
                   "a": ("imagenet-adversarial", "imagenet-a"),
                   "r": ("imagenet-rendition", "imagenet-r")}[which]
    ddir = os.path.join(root, folder)
    image_dir = os.path.join(ddir, sub)
    write_classnames(os.path.join(ddir, "classnames.txt"), all_wnids, all_names)
    if which == "v2":
        for y in range(1000):
            os.makedirs(os.path.join(image_dir, str(y)), exist_ok=True)
        used = [0, 2, 999]
        for y in used:
            for i in range(2):
                write_image(os.path.join(image_dir, str(y), f"{i}.jpeg"), seed=y + i)
        return SimpleNamespace(dataset_dir=ddir, image_base=image_dir, classnames=all_names, labels=used,
                               per_class=2, split_path=os.path.join(ddir, "classnames.txt"))
    chosen = [1, 3, 4, 7] if which in ("a", "r") else [0, 1, 2, 3, 4]
    for y in chosen:
        for i in range(2):
            write_image(os.path.join(image_dir, all_wnids[y], f"{i}.jpg"), seed=y + i)
    if which in ("a", "r"):
        with open(os.path.join(image_dir, "README.txt"), "w") as f:
            f.write("readme\n")
    chosen.sort(key=lambda y: all_wnids[y])  # labels follow the sorted folder names
    return SimpleNamespace(dataset_dir=ddir, image_base=image_dir, classnames=[all_names[y] for y in chosen],
                           labels=list(range(len(chosen))), per_class=2, split_path=os.path.join(ddir, "classnames.txt"))


VOC_XML = {"aeroplane": 0, "bicycle": 1, "bird": 2, "boat": 3, "bottle": 4, "bus": 5, "car": 6, "cat": 7, "chair": 8,
           "cow": 9, "diningtable": 10, "dog": 11, "horse": 12, "motorbike": 13, "person": 14, "pottedplant": 15,
           "sheep": 16, "sofa": 17, "train": 18, "tvmonitor": 19}


def _voc_xml(path, names):
    objs = "".join(f"<object><name>{n}</name><part><name>head</name></part><difficult>0</difficult></object>"
                   for n in names)
    with open(path, "w") as f:
        f.write(f"<annotation><filename>{os.path.basename(path)[:-4]}.jpg</filename>{objs}</annotation>")


def make_voc(root, lists_in="voc12", with_npy=False):
    """Training images: 3 per class with that class alone, plus a few with two classes; test: 2 per class."""
    xml_names = sorted(VOC_XML, key=VOC_XML.get)
    ddir = os.path.join(root, "voc12data")
    voc = os.path.join(ddir, "VOCdevkit", "VOC2012")
    for sub in ("JPEGImages", "Annotations"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    labels = {}
    train_ids, test_ids = [], []
    k = 0
    for c in range(20):
        for i in range(3):
            iid = f"2008_{k:06d}"
            k += 1
            train_ids.append(iid)
            labels[iid] = [c]
        for i in range(2):
            iid = f"2009_{k:06d}"
            k += 1
            test_ids.append(iid)
            labels[iid] = [c]
    for a, b in ((0, 14), (7, 11), (10, 15), (3, 4)):
        iid = f"2010_{k:06d}"
        k += 1
        train_ids.append(iid)
        labels[iid] = [a, b]
    iid = f"2011_{k:06d}"
    test_ids.append(iid)
    labels[iid] = [2, 19]
    for j, (iid, cs) in enumerate(labels.items()):
        write_image(os.path.join(voc, "JPEGImages", iid + ".jpg"), seed=j)
        _voc_xml(os.path.join(voc, "Annotations", iid + ".xml"), [xml_names[c] for c in cs])
    ldir = os.path.join(ddir, lists_in) if lists_in else ddir
    os.makedirs(ldir, exist_ok=True)
    with open(os.path.join(ldir, "train_aug_id.txt"), "w") as f:
        f.write("\n".join(train_ids) + "\n")
    with open(os.path.join(ldir, "val_id.txt"), "w") as f:
        f.write("\n".join(test_ids) + "\n")
    if with_npy:
        table = {}
        for iid, cs in labels.items():
            v = np.zeros(20, np.float32)
            v[cs] = 1
            table[iid] = v
        np.save(os.path.join(ldir, "cls_labels.npy"), table)
    multi_hot = {iid: [int(c in cs) for c in range(20)] for iid, cs in labels.items()}
    return SimpleNamespace(dataset_dir=ddir, image_base=os.path.join(voc, "JPEGImages"), labels=multi_hot,
                           train_ids=train_ids, test_ids=test_ids, split_path=os.path.join(ldir, "train_aug_id.txt"))


SPLIT_MAKERS = {
    "OxfordPets": make_oxford_pets,
    "Caltech101": make_caltech101,
    "StanfordCars": make_stanford_cars,
    "OxfordFlowers": make_oxford_flowers,
    "Food101": make_food101,
    "SUN397": make_sun397,
    "UCF101": make_ucf101,
    "DescribableTextures": make_dtd,
    "EuroSAT": make_eurosat,
    "FGVCAircraft": make_fgvc_aircraft,
}


def data_cfg(root, name, shots=-1, seed=1, subsample="all"):
    from dapt.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    cfg.INPUT.SIZE = (8, 8)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.VERBOSE = False
    return cfg
