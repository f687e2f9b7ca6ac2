"""Describable Textures (47), CoOp layout: $DATA/dtd/{images,split_zhou_DescribableTextures.json}."""
from dapt.data.base import read_and_split_data
from dapt.data.datasets._common import CoOpDataset
from dapt.data.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class DescribableTextures(CoOpDataset):
    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    num_classes_expected = 47
    readme_anchor = "dtd"

    def build_split(self, rng):
        return read_and_split_data(self.image_dir, rng=rng)
