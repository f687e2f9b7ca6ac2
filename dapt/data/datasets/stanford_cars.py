"""Stanford Cars (196), CoOp layout: $DATA/stanford_cars/{cars_train,cars_test,devkit,
cars_test_annos_withlabels.mat,split_zhou_StanfordCars.json}; split paths are relative to the
dataset folder (cars_train/..., cars_test/...)."""
import os

from dapt.data.base import Datum, split_trainval
from dapt.data.datasets._common import CoOpDataset, needs_scipy
from dapt.data.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class StanfordCars(CoOpDataset):
    dataset_dir = "stanford_cars"
    image_subdir = ""
    split_file = "split_zhou_StanfordCars.json"
    split_prefix = "dataset"
    num_classes_expected = 196
    readme_anchor = "stanfordcars"

    def build_split(self, rng):
        loadmat = needs_scipy("the devkit .mat files", self.split_path)
        meta = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        trainval = self.read_data(loadmat, "cars_train", os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat"), meta)
        test = self.read_data(loadmat, "cars_test", os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat"), meta)
        train, val = split_trainval(trainval, rng=rng)
        return train, val, test

    def read_data(self, loadmat, image_dir, anno_file, meta_file):
        annos = loadmat(anno_file)["annotations"][0]
        names = loadmat(meta_file)["class_names"][0]
        items = []
        for a in annos:
            imname = str(a["fname"][0])
            label = int(a["class"][0, 0]) - 1
            classname = str(names[label][0])
            words = classname.split(" ")
            year = words.pop(-1)
            items.append(Datum(impath=os.path.join(self.dataset_dir, image_dir, imname), label=label,
                               classname=" ".join([year] + words)))
        return items
