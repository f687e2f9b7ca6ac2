"""SUN397, CoOp layout: $DATA/sun397/{SUN397,split_zhou_SUN397.json} (fallback: ClassName.txt,
Training_01.txt, Testing_01.txt)."""
import os

from dapt.data.base import Datum, split_trainval
from dapt.data.datasets._common import CoOpDataset, read_lines
from dapt.data.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class SUN397(CoOpDataset):
    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    num_classes_expected = 397
    readme_anchor = "sun397"

    def build_split(self, rng):
        classnames = [ln.strip()[1:] for ln in read_lines(os.path.join(self.dataset_dir, "ClassName.txt"))]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        trainval = self.read_data(cname2lab, "Training_01.txt")
        test = self.read_data(cname2lab, "Testing_01.txt")
        train, val = split_trainval(trainval, rng=rng)
        return train, val, test

    def read_data(self, cname2lab, text_file):
        items = []
        for line in read_lines(os.path.join(self.dataset_dir, text_file)):
            imname = line.strip()[1:]  # drop the leading "/"
            folder = os.path.dirname(imname)
            # "a/abbey" -> "abbey"; "b/bakery/shop" -> "shop bakery" (qualifiers first, as CoOp)
            name = " ".join(folder.split("/")[1:][::-1])
            items.append(Datum(impath=os.path.join(self.image_dir, imname), label=cname2lab[folder], classname=name))
        return items
