"""PASCAL VOC 2012, multi-label classification (20 classes), in the official DAPT layout:

    $DATA/voc12data/VOCdevkit/VOC2012/{JPEGImages,Annotations,ImageSets}
    $DATA/voc12data/voc12/train_aug_id.txt   (10,582 ids: VOC 2012 train + SBD, for training)
    $DATA/voc12data/voc12/val_id.txt         (1,449 ids: VOC 2012 segmentation val, for testing;
                                              falls back to ImageSets/Segmentation/val.txt)
    $DATA/voc12data/voc12/cls_labels.npy     (optional: {id: 20-d 0/1 vector}; without it the
                                              labels are read from Annotations/<id>.xml)

(the lists may also sit directly in voc12data/). Targets are multi-hot ``list`` labels; the
class order and names are the official release's. Base/new: the first / last 10 classes; an
image belongs to a half when it contains at least one of its classes, and its target keeps only
that half's classes. Few-shot: K images per class (images drawn for earlier classes count once),
validation: min(K, 4) per class from the remaining training images; none for the full set.
"""
import logging
import os
import xml.etree.ElementTree as ET
from typing import Dict, List

import numpy as np

from dapt.data.base import Datum, fewshot_cache_path, load_pickle, rebase_paths, save_pickle, seeded_rng
from dapt.data.datasets._common import CoOpDataset, DatasetLayoutError, read_lines
from dapt.data.registry import DATASET_REGISTRY
from dapt.utils.safe_pickle import load_npy

logger = logging.getLogger(__name__)

CLASSNAMES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "table",
              "dog", "horse", "motorbike", "person", "plant", "sheep", "sofa", "train", "tvmonitor"]
# VOC annotation names -> index (the XML spells three classes differently)
XML_NAMES = {n: i for i, n in enumerate(CLASSNAMES)}
XML_NAMES.update({"diningtable": 10, "pottedplant": 15})


def _positives(label) -> List[int]:
    return [i for i, v in enumerate(label) if v]


def _datum(impath: str, label: List[int], names: List[str]) -> Datum:
    return Datum(impath=impath, label=list(label), classname=", ".join(names[i] for i in _positives(label)))


@DATASET_REGISTRY.register()
class VOC12(CoOpDataset):
    dataset_dir = "voc12data"
    image_subdir = os.path.join("VOCdevkit", "VOC2012", "JPEGImages")
    num_classes_expected = 20
    readme_anchor = "pascal-voc-2012"
    multi_label = True

    def declared_classnames(self, cfg):
        sub = cfg.DATASET.SUBSAMPLE_CLASSES
        return list(CLASSNAMES if sub == "all" else (CLASSNAMES[:10] if sub == "base" else CLASSNAMES[10:]))

    # ------------------------------------------------------------------ files
    def list_path(self, name: str) -> str:
        for cand in (os.path.join(self.dataset_dir, "voc12", name), os.path.join(self.dataset_dir, name)):
            if os.path.isfile(cand):
                return cand
        return ""

    def read_ids(self, name: str, fallback: str = "") -> List[str]:
        path = self.list_path(name)
        if not path and fallback and os.path.isfile(fallback):
            path = fallback
        if not path:
            raise DatasetLayoutError(f"image list {os.path.join(self.dataset_dir, 'voc12', name)} does not exist; copy "
                                     f"voc12/{name} from the official DAPT repository (datasets/README.md)")
        ids = []
        for line in read_lines(path):
            tok = line.strip().split()[0]
            tok = os.path.splitext(os.path.basename(tok))[0]  # accept "JPEGImages/x.jpg" style lines too
            ids.append(tok)
        return ids

    def read_labels(self, ids: List[str]) -> Dict[str, List[int]]:
        npy = self.list_path("cls_labels.npy")
        if npy:
            fix = "re-download the official voc12/cls_labels.npy or delete it to read Annotations/*.xml"
            arr = load_npy(npy, fix=fix)
            table = arr.item() if arr.dtype == object and arr.ndim == 0 else None
            if not isinstance(table, dict):
                raise DatasetLayoutError(f"{npy} does not hold a {{image id: labels}} dict; {fix}")
            out = {}
            for i in ids:
                vec = table.get(i, table.get(i + ".jpg"))
                if vec is None:
                    raise DatasetLayoutError(f"{npy} has no labels for image {i}; use the official cls_labels.npy "
                                             "or delete it to read Annotations/*.xml")
                out[i] = [int(v > 0) for v in np.asarray(vec).ravel()[:20]]
            return out
        ann_dir = os.path.join(self.dataset_dir, "VOCdevkit", "VOC2012", "Annotations")
        out = {}
        for i in ids:
            path = os.path.join(ann_dir, i + ".xml")
            if not os.path.isfile(path):
                raise DatasetLayoutError(f"annotation {path} does not exist; extract VOCtrainval_11-May-2012.tar "
                                         "or provide voc12/cls_labels.npy")
            vec = [0] * 20
            for obj in ET.parse(path).getroot().iter("object"):  # object names only, not body parts
                name = obj.findtext("name", "").strip()
                if name in XML_NAMES:
                    vec[XML_NAMES[name]] = 1
            out[i] = vec
        return out

    def load_split(self, cfg):
        train_ids = self.read_ids("train_aug_id.txt")
        test_ids = self.read_ids("val_id.txt", os.path.join(self.dataset_dir, "VOCdevkit", "VOC2012", "ImageSets",
                                                           "Segmentation", "val.txt"))
        labels = self.read_labels(train_ids + test_ids)
        mk = lambda ids: [_datum(os.path.join(self.image_dir, i + ".jpg"), labels[i], CLASSNAMES) for i in ids]  # noqa: E731
        return mk(train_ids), None, mk(test_ids)

    # ------------------------------------------------------------------ few-shot and base/new
    def sample_per_class(self, data, num_shots: int, rng, exclude=()):
        """K images for each class in order; an image drawn for an earlier class is not drawn again."""
        chosen, taken = [], set(exclude)
        for c in range(len(CLASSNAMES)):
            cands = [d for d in data if d.label[c] and d.impath not in taken]
            pick = rng.sample(cands, num_shots) if len(cands) >= num_shots else cands
            for d in pick:
                taken.add(d.impath)
            chosen.extend(pick)
        return chosen

    def few_shot(self, cfg, train, val):
        k = int(cfg.DATASET.NUM_SHOTS)
        if k < 1:
            return train, None
        path = fewshot_cache_path(self.split_fewshot_dir, k, cfg.SEED)
        if os.path.exists(path) and not self.readonly:
            logger.info("Loading preprocessed few-shot data from %s", path)
            data = load_pickle(path)
            few = data.get("train") if isinstance(data, dict) else None
            if not few:
                raise ValueError(f"{path} holds no few-shot training list; move it away to regenerate")
            few = [self._as_multi_hot(d) for d in rebase_paths(few, self.dataset_dir, path)]
            if "val" in data:
                return few, [self._as_multi_hot(d) for d in rebase_paths(data["val"], self.dataset_dir, path)]
            # the official DAPT release caches only "train" (numpy labels): keep its images, hold out a val
            rng = seeded_rng(cfg.SEED)
            return few, self.sample_per_class(train, min(k, 4), rng, exclude={d.impath for d in few})
        rng = seeded_rng(cfg.SEED)
        few = self.sample_per_class(train, k, rng)
        val = self.sample_per_class(train, min(k, 4), rng, exclude={d.impath for d in few})
        if not self.readonly and save_pickle({"train": few, "val": val}, path):
            logger.info("Saved preprocessed few-shot data to %s", path)
        return few, val

    @staticmethod
    def _as_multi_hot(d: Datum) -> Datum:
        lab = [int(v > 0) for v in np.asarray(d.label).ravel()]
        if len(lab) != len(CLASSNAMES):
            raise ValueError(f"few-shot cache entry {d.impath} has a {len(lab)}-entry label, expected 20; "
                             "move the cache away to regenerate")
        return _datum(d.impath, lab, CLASSNAMES)

    def subsample(self, cfg, train, val, test):
        sub = cfg.DATASET.SUBSAMPLE_CLASSES
        if sub not in ("all", "base", "new"):
            raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be all, base or new, got '{sub}'")
        if sub == "all":
            return train, val, test
        keep = list(range(10)) if sub == "base" else list(range(10, 20))
        names = [CLASSNAMES[i] for i in keep]
        logger.info("Subsampling %s classes: %s", sub, ", ".join(names))

        def cut(data):
            if data is None:
                return None
            out = []
            for d in data:
                lab = [int(d.label[i]) for i in keep]
                if any(lab):
                    out.append(_datum(d.impath, lab, names))
            return out

        return cut(train), cut(val), cut(test)
