"""ObjectsOnScenes: the synthetic objects-on-scenes testbed (``dapt.data.synthetic.scenes``).

Generated on first use from the DATASET.SCENES keys into
``<DATASET.ROOT or $DAPT_CACHE/datasets>/objects_on_scenes/<parameters>/`` (one folder per set of
parameters), then read like any CoOp dataset: ``images/``, ``split_dapt_scenes.json``,
``split_fewshot/``, exact masks in the DAPT store ``masks/gt``, and ``scene_labels.json`` with
every image's background class. ``test`` is decorrelated (every class on every background); the
correlated test set (``extra_tests["correlated"]``) follows the training split's p.
"""
from __future__ import annotations

import os
from typing import Dict

from dapt.data.base import read_split, subsample_classes
from dapt.data.datasets._common import CoOpDataset, DatasetLayoutError
from dapt.data.registry import DATASET_REGISTRY
from dapt.data.synthetic import scenes


def scenes_params(cfg) -> Dict[str, object]:
    """The generation parameters named by the DATASET.SCENES keys."""
    s = cfg.DATASET.SCENES
    return {"seed": int(s.SEED), "p": float(s.P), "n_train_per_class": int(s.N_TRAIN),
            "n_val_per_class": int(s.N_VAL), "n_test_per_class": int(s.N_TEST), "image_size": int(s.IMAGE_SIZE),
            "num_classes": int(s.NUM_CLASSES), "typical_color_p": float(s.TYPICAL_COLOR_P)}


def scenes_dataset_dir(cfg) -> str:
    """Where the generation for ``cfg`` lives (DATASET.ROOT, or the cache folder when it is empty)."""
    root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT)) if cfg.DATASET.ROOT else scenes.default_cache_root()
    return os.path.join(root, ObjectsOnScenes.folder, scenes.dataset_folder_name(**scenes_params(cfg)))


@DATASET_REGISTRY.register()
class ObjectsOnScenes(CoOpDataset):
    folder = "objects_on_scenes"
    dataset_dir = folder
    image_subdir = "images"
    split_file = scenes.SPLIT_FILE
    background_classnames = list(scenes.BACKGROUNDS)

    def __init__(self, cfg, readonly: bool = False):
        self.readonly = readonly
        self.dataset_dir = scenes_dataset_dir(cfg)
        if readonly:
            if not os.path.isfile(os.path.join(self.dataset_dir, scenes.COMPLETE_FILE)):
                raise DatasetLayoutError(f"{self.dataset_dir} holds no complete generation; run training once "
                                         "(it generates the data) or call generate_objects_on_scenes")
        else:
            scenes.generate_objects_on_scenes(self.dataset_dir, **scenes_params(cfg))
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        self.split_path = os.path.join(self.dataset_dir, self.split_file)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        self.num_classes_expected = int(cfg.DATASET.SCENES.NUM_CLASSES)
        train, val, test = self.load_split(cfg)
        (correlated,) = read_split(self.split_path, self.path_prefix, keys=(scenes.CORRELATED_TEST,))
        train, val = self.few_shot(cfg, train, val)
        train, val, test, correlated = subsample_classes(train, val, test, correlated,
                                                         subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super(CoOpDataset, self).__init__(train_x=train, val=val or None, test=test)
        # a second test set that follows the training distribution: every final test also reports
        # ``correlated_accuracy`` on it, and its gap to ``accuracy`` measures the reliance on backgrounds
        self.extra_tests = {"correlated": correlated}
        self._scene_labels = None

    @property
    def scene_labels(self) -> Dict[str, dict]:
        """Per-image records (background, colour, seeds) keyed by path under ``images``."""
        if self._scene_labels is None:
            self._scene_labels = scenes.read_scene_labels(self.dataset_dir)
        return self._scene_labels

    def background_of(self, impath: str) -> str:
        """The background class of an image of this dataset."""
        rel = os.path.relpath(os.path.abspath(impath), self.image_dir).replace(os.sep, "/")
        return self.scene_labels[rel]["background"]
