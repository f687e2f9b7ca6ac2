"""Oxford-IIIT Pets (37 breeds), CoOp layout: $DATA/oxford_pets/{images,annotations,split_zhou_OxfordPets.json}."""
import os

from dapt.data.base import Datum, split_trainval
from dapt.data.datasets._common import CoOpDataset, read_lines
from dapt.data.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class OxfordPets(CoOpDataset):
    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    num_classes_expected = 37
    readme_anchor = "oxfordpets"

    def read_data(self, split_file):
        items = []
        for line in read_lines(os.path.join(self.dataset_dir, "annotations", split_file)):
            if line.startswith("#"):
                continue
            imname, label = line.split()[:2]
            breed = "_".join(imname.split("_")[:-1]).lower()
            items.append(Datum(impath=os.path.join(self.image_dir, imname + ".jpg"), label=int(label) - 1,
                               classname=breed))
        return items

    def build_split(self, rng):
        train, val = split_trainval(self.read_data("trainval.txt"), rng=rng)
        return train, val, self.read_data("test.txt")
