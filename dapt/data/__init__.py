"""Data core: Datum / DatasetBase, the CoOp split and few-shot helpers, the dataset registry,
transforms and the DataManager. Dataset modules live in ``dapt.data.datasets`` and register
themselves when ``build_dataset`` imports them."""
from dapt.data.base import (Datum, DatasetBase, listdir_nohidden, read_split, save_split, split_trainval,
                            subsample_classes)
from dapt.data.data_manager import DataManager, DatasetWrapper, read_image
from dapt.data.registry import DATASET_REGISTRY, build_dataset
from dapt.data.transforms import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, build_transform

__all__ = [
    "Datum", "DatasetBase", "listdir_nohidden", "read_split", "save_split", "split_trainval", "subsample_classes",
    "DataManager", "DatasetWrapper", "read_image", "DATASET_REGISTRY", "build_dataset", "CLIP_PIXEL_MEAN",
    "CLIP_PIXEL_STD", "build_transform",
]
