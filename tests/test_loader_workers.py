"""Loader workers: evaluation loaders keep their workers alive across evaluations and give the same
batches as without workers; training loaders restart theirs per epoch (seeds from the main RNG)."""
import torch

from dapt.data.base import DatasetBase
from dapt.data.data_manager import DataManager
from test_data_core import _cfg, _write_images


def _batches(loader):
    return [(b["index"].tolist(), b["img"].clone()) for b in loader]


def test_eval_loader_workers_persist_and_change_nothing(tmp_path):
    items = _write_images(str(tmp_path), 3, 2)
    ds = DatasetBase(train_x=items, test=items)
    cfg = _cfg(DATALOADER__NUM_WORKERS=1)
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    dm = DataManager(cfg, dataset=ds)
    assert dm.test_loader.persistent_workers and not dm.train_loader_x.persistent_workers
    assert not dm.test_loader.pin_memory  # CPU run: nothing to pin for
    cfg0 = _cfg(DATALOADER__NUM_WORKERS=0)
    cfg0.DATALOADER.TEST.BATCH_SIZE = 4
    reference = _batches(DataManager(cfg0, dataset=ds).test_loader)
    first = _batches(dm.test_loader)
    workers = dm.test_loader._iterator  # the worker pool, kept after the first pass
    assert workers is not None
    second = _batches(dm.test_loader)
    assert dm.test_loader._iterator is workers  # the same workers served the second evaluation
    for got in (first, second):
        assert [i for i, _ in got] == [i for i, _ in reference]
        for (_, a), (_, b) in zip(got, reference):
            assert torch.equal(a, b)
    del workers
    dm.test_loader._iterator._shutdown_workers()
