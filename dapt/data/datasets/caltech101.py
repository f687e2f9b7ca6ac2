"""Caltech-101 (100 classes: BACKGROUND_Google and Faces_easy dropped), CoOp layout:
$DATA/caltech-101/{101_ObjectCategories,split_zhou_Caltech101.json}."""
from dapt.data.base import read_and_split_data
from dapt.data.datasets._common import CoOpDataset
from dapt.data.registry import DATASET_REGISTRY

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(CoOpDataset):
    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    num_classes_expected = 100
    readme_anchor = "caltech101"

    def build_split(self, rng):
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES, rng=rng)
