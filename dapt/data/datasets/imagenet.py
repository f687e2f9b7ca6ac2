"""ImageNet-1k, CoOp layout: $DATA/imagenet/{images/{train,val}/<wnid>/*.JPEG, classnames.txt,
preprocessed.pkl (written on first use), split_fewshot/}.

As in CoOp the ImageNet validation set is the test set and the full image list is cached in
preprocessed.pkl, so the 1.28M training files are listed once. Few-shot training data is
sampled (and cached) as for every other dataset. Unlike CoOp (val = test) and the official DAPT
loader (no few-shot sampling, model selection on test images), the validation split is held out
from the training images: min(K, 4) per class that are not in the few-shot training set, and
none when the full training set is used.
"""
import logging
import os
from collections import OrderedDict

from dapt.data.base import (Datum, fewshot_cache_path, listdir_nohidden, load_pickle, rebase_paths, save_pickle,
                            seeded_rng)
from dapt.data.datasets._common import CoOpDataset, DatasetLayoutError, read_lines, require
from dapt.data.registry import DATASET_REGISTRY

logger = logging.getLogger(__name__)


def read_classnames(text_file: str) -> "OrderedDict[str, str]":
    """classnames.txt: "<wnid> <class name words>" per line -> {wnid: name} in file order."""
    require(text_file, "class name file", "copy CoOp's imagenet classnames.txt there (datasets/README.md)")
    out = OrderedDict()
    for line in read_lines(text_file):
        parts = line.strip().split(" ")
        out[parts[0]] = " ".join(parts[1:])
    return out


def read_folder_per_class(split_dir: str, classnames, folders=None):
    """Images under split_dir/<folder>/; label = position of the folder in ``folders`` (sorted)."""
    if folders is None:
        folders = sorted(f.name for f in os.scandir(split_dir) if f.is_dir())
    items = []
    for label, folder in enumerate(folders):
        if folder not in classnames:
            raise DatasetLayoutError(f"{os.path.join(split_dir, folder)} is not a class in classnames.txt; "
                                     "remove it or use CoOp's classnames.txt")
        cdir = os.path.join(split_dir, folder)
        for imname in listdir_nohidden(cdir):
            items.append(Datum(impath=os.path.join(cdir, imname), label=label, classname=classnames[folder]))
    return items


@DATASET_REGISTRY.register()
class ImageNet(CoOpDataset):
    dataset_dir = "imagenet"
    image_subdir = "images"
    num_classes_expected = 1000
    readme_anchor = "imagenet"

    read_classnames = staticmethod(read_classnames)

    def __init__(self, cfg, readonly: bool = False):
        self.preprocessed = ""
        super().__init__(cfg, readonly=readonly)

    def load_split(self, cfg):
        self.preprocessed = os.path.join(self.dataset_dir, "preprocessed.pkl")
        if os.path.exists(self.preprocessed):
            data = load_pickle(self.preprocessed)
            if not isinstance(data, dict) or not {"train", "test"} <= set(data):
                raise ValueError(f"{self.preprocessed} does not hold {{'train': ..., 'test': ...}}; delete it and it "
                                 "will be regenerated")
            train = rebase_paths(data["train"], self.dataset_dir, self.preprocessed)
            test = rebase_paths(data["test"], self.dataset_dir, self.preprocessed)
        else:
            classnames = read_classnames(os.path.join(self.dataset_dir, "classnames.txt"))
            train = read_folder_per_class(require(os.path.join(self.image_dir, "train"), "folder"), classnames)
            test = read_folder_per_class(require(os.path.join(self.image_dir, "val"), "folder"), classnames)
            if not self.readonly:
                save_pickle({"train": train, "test": test}, self.preprocessed)
        return train, None, test

    def few_shot(self, cfg, train, val):
        k = int(cfg.DATASET.NUM_SHOTS)
        if k < 1:
            return train, None
        path = fewshot_cache_path(self.split_fewshot_dir, k, cfg.SEED)
        rng = seeded_rng(cfg.SEED)
        if os.path.exists(path) and not self.readonly:
            logger.info("Loading preprocessed few-shot data from %s", path)
            data = load_pickle(path)
            if not isinstance(data, dict) or "train" not in data:
                raise ValueError(f"{path} does not hold a few-shot split ({{'train': ...}}); delete it to regenerate")
            few = rebase_paths(data["train"], self.dataset_dir, path)
            if "val" in data:
                return few, rebase_paths(data["val"], self.dataset_dir, path)
            # a CoOp cache holds only "train": draw the held-out val after the same draws
            self.generate_fewshot_dataset(train, num_shots=k, rng=rng)
            return few, self.held_out_val(train, few, k, rng)
        few = self.generate_fewshot_dataset(train, num_shots=k, rng=rng)
        val = self.held_out_val(train, few, k, rng)
        if not self.readonly and save_pickle({"train": few, "val": val}, path):
            logger.info("Saved preprocessed few-shot data to %s", path)
        return few, val


    def held_out_val(self, train_all, train_fewshot, num_shots, rng):
        """min(K, 4) per class from the training images that are not in the few-shot set."""
        used = {d.impath for d in train_fewshot}
        rest = [d for d in train_all if d.impath not in used]
        return self.generate_fewshot_dataset(rest, num_shots=min(num_shots, 4), rng=rng)


class ImageNetTestSet(CoOpDataset):
    """A test-only ImageNet variant: classnames.txt (ImageNet's, copied into the folder) maps its
    class folders to ImageNet class names; train_x = test = all images (CoOp)."""

    ignored = ("README.txt",)
    num_folders = 1000

    def load_split(self, cfg):
        classnames = read_classnames(os.path.join(self.dataset_dir, "classnames.txt"))
        require(self.image_dir, "image folder")
        data = self.read_data(classnames)
        return data, None, data

    def class_folders(self):
        return [f for f in listdir_nohidden(self.image_dir, sort=True) if f not in self.ignored]

    def read_data(self, classnames):
        folders = self.class_folders()
        self._declared = [classnames[f] for f in folders if f in classnames]
        return read_folder_per_class(self.image_dir, classnames, folders)

    def declared_classnames(self, cfg):
        # every class folder is a class, even one without images (labels stay aligned with names)
        return self._declared

    def few_shot(self, cfg, train, val):
        return train, val

    def subsample(self, cfg, train, val, test):
        return train, val, test  # CoOp evaluates the variants on all their classes


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetTestSet):
    """ImageNetV2 matched-frequency: class folders are named 0..999 in classnames.txt order."""

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    readme_anchor = "imagenetv2"
    num_classes_expected = 1000

    def read_data(self, classnames):
        wnids = list(classnames)
        if len(wnids) != 1000:
            raise DatasetLayoutError(f"{os.path.join(self.dataset_dir, 'classnames.txt')} has {len(wnids)} lines, "
                                     "expected ImageNet's 1000; copy CoOp's imagenet classnames.txt")
        self._declared = [classnames[w] for w in wnids]
        items = []
        for label in range(1000):
            cdir = os.path.join(self.image_dir, str(label))
            require(cdir, "class folder", "re-extract imagenetv2-matched-frequency.tar.gz")
            for imname in listdir_nohidden(cdir):
                items.append(Datum(impath=os.path.join(cdir, imname), label=label, classname=classnames[wnids[label]]))
        return items


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetTestSet):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    readme_anchor = "imagenet-sketch"
    num_classes_expected = 1000


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetTestSet):
    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    readme_anchor = "imagenet-a"
    num_classes_expected = 200


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetTestSet):
    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    readme_anchor = "imagenet-r"
    num_classes_expected = 200
