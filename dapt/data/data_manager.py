"""DataManager: dataset + transforms -> train / val / test loaders (Dassl's shape)."""
from __future__ import annotations

import logging
import random
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler
from torchvision.transforms import Compose, Normalize, Resize, ToTensor

from dapt.data.registry import build_dataset
from dapt.data.transforms import INTERPOLATION_MODES, build_transform

logger = logging.getLogger(__name__)


def read_image(path: str) -> Image.Image:
    """Open an image as RGB; a missing or unreadable file is an error that names it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} does not exist; run tools/check_data.py on your DATASET.ROOT") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise OSError(f"image {path} cannot be read ({exc}); re-extract or replace the file") from None


def label_tensor(label, num_classes: Optional[int] = None) -> torch.Tensor:
    """int -> int64 scalar; multi-hot sequence -> float32 vector."""
    if isinstance(label, (list, tuple, np.ndarray)):
        t = torch.as_tensor(np.asarray(label, dtype=np.float32))
        if num_classes is not None and t.numel() != num_classes:
            raise ValueError(f"multi-hot label has {t.numel()} entries, the dataset has {num_classes} classes")
        return t
    return torch.tensor(int(label), dtype=torch.long)


class DatasetWrapper(Dataset):
    """Reads and transforms the images of a list of ``Datum``.

    Each sample is ``{"img", "label", "domain", "impath", "index"}``. With K_TRANSFORMS > 1 at
    training time "img" is a list of K views; a list of transforms gives "img", "img2", ...;
    RETURN_IMG0 adds "img0" (resized, normalised, un-augmented), as in Dassl.
    """

    def __init__(self, cfg, data_source: Sequence, transform=None, is_train: bool = False,
                 num_classes: Optional[int] = None):
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.num_classes = num_classes
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError("DATALOADER.K_TRANSFORMS > 1 needs a train transform")
        self.to_tensor = Compose([
            Resize(tuple(cfg.INPUT.SIZE), interpolation=INTERPOLATION_MODES.get(cfg.INPUT.INTERPOLATION,
                                                                                 INTERPOLATION_MODES["bilinear"])),
            ToTensor(),
            Normalize(mean=list(cfg.INPUT.PIXEL_MEAN), std=list(cfg.INPUT.PIXEL_STD)),
        ])

    def __len__(self) -> int:
        return len(self.data_source)

    def _views(self, tfm, img):
        views = [tfm(img) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views

    def __getitem__(self, idx: int):
        item = self.data_source[idx]
        out = {"label": label_tensor(item.label, self.num_classes), "domain": int(item.domain),
               "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is None:
            out["img"] = ToTensor()(img0)
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                out["img" if i == 0 else f"img{i + 1}"] = self._views(tfm, img0)
        else:
            out["img"] = self._views(self.transform, img0)
        if self.return_img0:
            out["img0"] = self.to_tensor(img0)
        return out


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a loader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_sampler(sampler_type: str, data_source: Sequence):
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    raise ValueError(f"DATALOADER sampler '{sampler_type}' is not supported; use RandomSampler or SequentialSampler")


def build_data_loader(cfg, sampler_type: str, data_source: Sequence, batch_size: int, tfm=None,
                      is_train: bool = True, dataset_wrapper=None, num_classes: Optional[int] = None) -> DataLoader:
    """A loader over ``data_source``; training drops the last partial batch only when there is a full
    one (Dassl). Pinned memory on CUDA. Evaluation loaders (deterministic transforms, nothing that
    changes between epochs) keep their workers alive across evaluations (``persistent_workers``);
    training loaders start them per epoch, so each epoch's worker seeds come from the main RNG (which
    a checkpoint restores: resuming stays bit-identical with NUM_WORKERS > 0)."""
    wrapper = dataset_wrapper or DatasetWrapper
    if wrapper is DatasetWrapper:
        ds = wrapper(cfg, data_source, transform=tfm, is_train=is_train, num_classes=num_classes)
    else:
        ds = wrapper(cfg, data_source, transform=tfm, is_train=is_train)
    nw = int(cfg.DATALOADER.NUM_WORKERS)
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=build_sampler(sampler_type, data_source),
        num_workers=nw,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=bool(cfg.USE_CUDA) and torch.cuda.is_available(),
        worker_init_fn=seed_worker if nw > 0 else None,
        persistent_workers=nw > 0 and not is_train,
    )


class DataManager:
    """Builds the dataset (unless given), the transforms and the loaders."""

    def __init__(self, cfg, dataset=None, tfm_train=None, tfm_test=None, dataset_wrapper=None):
        self.cfg = cfg
        self.dataset = dataset if dataset is not None else build_dataset(cfg)
        tfm_train = tfm_train if tfm_train is not None else build_transform(cfg, is_train=True)
        tfm_test = tfm_test if tfm_test is not None else build_transform(cfg, is_train=False)
        ds = self.dataset
        n_cls = ds.num_classes if getattr(ds, "multi_label", False) else None
        if not ds.train_x and not ds.test:
            raise ValueError(f"dataset {type(ds).__name__} has no training and no test data")
        dl = cfg.DATALOADER
        self.train_loader_x = None
        if ds.train_x:
            self.train_loader_x = build_data_loader(cfg, dl.TRAIN_X.SAMPLER, ds.train_x, dl.TRAIN_X.BATCH_SIZE,
                                                    tfm_train, True, dataset_wrapper, n_cls)
        self.train_loader_u = None
        if getattr(ds, "train_u", None):
            u = dl.TRAIN_X if dl.TRAIN_U.SAME_AS_X else dl.TRAIN_U
            self.train_loader_u = build_data_loader(cfg, u.SAMPLER, ds.train_u, u.BATCH_SIZE, tfm_train, True,
                                                    dataset_wrapper, n_cls)
        self.val_loader = None
        if ds.val:
            self.val_loader = build_data_loader(cfg, dl.TEST.SAMPLER, ds.val, dl.TEST.BATCH_SIZE, tfm_test, False,
                                                dataset_wrapper, n_cls)
        self.test_loader = None
        if ds.test:
            self.test_loader = build_data_loader(cfg, dl.TEST.SAMPLER, ds.test, dl.TEST.BATCH_SIZE, tfm_test, False,
                                                 dataset_wrapper, n_cls)
        # further test sets a dataset offers (``dataset.extra_tests``: name -> items), evaluated with every final test
        self.extra_test_loaders = {
            name: build_data_loader(cfg, dl.TEST.SAMPLER, items, dl.TEST.BATCH_SIZE, tfm_test, False, dataset_wrapper,
                                    n_cls)
            for name, items in (getattr(ds, "extra_tests", None) or {}).items() if items}
        self.tfm_train, self.tfm_test = tfm_train, tfm_test
        self.dataset_wrapper = dataset_wrapper
        if cfg.VERBOSE:
            self.show_dataset_summary()

    def select_train(self, indices) -> None:
        """Keep only ``train_x[indices]`` (data-efficient setting, ``dapt.data.selection``) and rebuild the
        training loader over them."""
        ds = self.dataset
        ds._train_x = [ds.train_x[int(i)] for i in indices]  # DatasetBase exposes train_x read-only
        n_cls = ds.num_classes if getattr(ds, "multi_label", False) else None
        dl = self.cfg.DATALOADER
        self.train_loader_x = build_data_loader(self.cfg, dl.TRAIN_X.SAMPLER, ds.train_x, dl.TRAIN_X.BATCH_SIZE,
                                                self.tfm_train, True, self.dataset_wrapper, n_cls)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def lab2cname(self):
        return self.dataset.lab2cname

    @property
    def classnames(self):
        return self.dataset.classnames

    @property
    def num_source_domains(self) -> int:
        return len(self.cfg.DATASET.SOURCE_DOMAINS)

    def show_dataset_summary(self) -> None:
        ds = self.dataset
        rows = [("Dataset", self.cfg.DATASET.NAME or type(ds).__name__), ("# classes", f"{self.num_classes:,}")]
        if getattr(ds, "multi_label", False):
            rows.append(("targets", "multi-label"))
        rows.append(("# train_x", f"{len(ds.train_x or []):,}"))
        if getattr(ds, "train_u", None):
            rows.append(("# train_u", f"{len(ds.train_u):,}"))
        if ds.val:
            rows.append(("# val", f"{len(ds.val):,}"))
        rows.append(("# test", f"{len(ds.test or []):,}"))
        width = max(len(k) for k, _ in rows)
        logger.info("Dataset summary\n%s", "\n".join(f"  {k:<{width}}  {v}" for k, v in rows))
