"""Food-101, CoOp layout: $DATA/food-101/{images,split_zhou_Food101.json}."""
from dapt.data.base import read_and_split_data
from dapt.data.datasets._common import CoOpDataset
from dapt.data.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class Food101(CoOpDataset):
    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    num_classes_expected = 101
    readme_anchor = "food101"

    def build_split(self, rng):
        return read_and_split_data(self.image_dir, rng=rng)
