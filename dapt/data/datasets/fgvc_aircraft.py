"""FGVC-Aircraft (100 variants), CoOp layout: $DATA/fgvc_aircraft/{images,variants.txt,
images_variant_{train,val,test}.txt} (the dataset's own split; no split_zhou file)."""
import os

from dapt.data.base import Datum
from dapt.data.datasets._common import CoOpDataset, DatasetLayoutError, read_lines
from dapt.data.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class FGVCAircraft(CoOpDataset):
    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"
    split_file = ""
    num_classes_expected = 100
    readme_anchor = "fgvcaircraft"

    def load_split(self, cfg):
        classnames = [ln.strip() for ln in read_lines(os.path.join(self.dataset_dir, "variants.txt"))]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        return tuple(self.read_data(cname2lab, f"images_variant_{s}.txt") for s in ("train", "val", "test"))

    def read_data(self, cname2lab, split_file):
        path = os.path.join(self.dataset_dir, split_file)
        items = []
        for line in read_lines(path):
            parts = line.strip().split(" ")
            classname = " ".join(parts[1:])
            if classname not in cname2lab:
                raise DatasetLayoutError(f"{path}: variant '{classname}' is not in variants.txt; re-extract the dataset")
            items.append(Datum(impath=os.path.join(self.image_dir, parts[0] + ".jpg"), label=cname2lab[classname],
                               classname=classname))
        return items
