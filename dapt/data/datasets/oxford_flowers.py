"""Oxford Flowers-102, CoOp layout: $DATA/oxford_flowers/{jpg,imagelabels.mat,cat_to_name.json,
split_zhou_OxfordFlowers.json}."""
import os
from collections import defaultdict

from dapt.data.base import Datum, read_json
from dapt.data.datasets._common import CoOpDataset, needs_scipy
from dapt.data.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class OxfordFlowers(CoOpDataset):
    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    num_classes_expected = 102
    readme_anchor = "oxfordflowers"

    def build_split(self, rng):
        loadmat = needs_scipy("imagelabels.mat", self.split_path)
        labels = loadmat(os.path.join(self.dataset_dir, "imagelabels.mat"))["labels"][0]
        lab2cname = read_json(os.path.join(self.dataset_dir, "cat_to_name.json"))
        tracker = defaultdict(list)
        for i, label in enumerate(labels):
            tracker[int(label)].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        train, val, test = [], [], []
        for label, paths in tracker.items():
            rng.shuffle(paths)
            n_train, n_val = round(len(paths) * 0.5), round(len(paths) * 0.2)
            name = lab2cname[str(label)]
            mk = lambda ps: [Datum(impath=p, label=label - 1, classname=name) for p in ps]  # noqa: E731
            train += mk(paths[:n_train])
            val += mk(paths[n_train:n_train + n_val])
            test += mk(paths[n_train + n_val:])
        return train, val, test
