"""EuroSAT RGB (10 land-use classes, descriptive names), CoOp layout: $DATA/eurosat/{2750,split_zhou_EuroSAT.json}."""
from dapt.data.base import read_and_split_data
from dapt.data.datasets._common import CoOpDataset
from dapt.data.registry import DATASET_REGISTRY

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(CoOpDataset):
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    num_classes_expected = 10
    readme_anchor = "eurosat"

    def build_split(self, rng):
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES, rng=rng)
