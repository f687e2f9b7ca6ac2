"""Logging without stalling the device: a training step converts no tensor to a host value outside
log points (TRAIN.PRINT_FREQ, the epoch's last step), and the logged averages and tensorboard
values equal the per-step values the steps returned."""
import sys

import pytest
import torch

from dapt.config import get_cfg_default
from dapt.engine.build import build_trainer
from engine_fixtures import make_dm

SYNCS = ("item", "tolist", "__float__", "__int__", "__bool__", "numpy")
# the data pipeline reads host tensors in the loader (workers when NUM_WORKERS > 0): not device syncs
DATA_SIDE = ("decouple/paired.py", "decouple/wrapper.py", "decouple/masks.py", "data/transforms.py",
             "data/data_manager.py")


def make_cfg(tiny_name, out, trainer="CoOp", dapt=False):
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = trainer
    cfg.MODEL.BACKBONE.NAME = tiny_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.OUTPUT_DIR = str(out)
    cfg.SEED = 1
    cfg.VERBOSE = False
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.01
    cfg.OPTIM.MAX_EPOCH = 2
    cfg.TRAIN.PRINT_FREQ = 1000  # only the epoch's last step is a log point
    cfg.TEST.NO_TEST = True
    cfg.TRAINER.COOP.N_CTX = 4
    for node in ("MAPLE",):
        getattr(cfg.TRAINER, node).PROMPT_DEPTH = 2
    return cfg


class FakeWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        assert isinstance(value, float), (tag, type(value))
        self.scalars.append((tag, value, step))

    def close(self):
        pass


def counting(monkeypatch, log):
    """Count the tensor-to-host conversions made by dapt's own code (the caller's file is under dapt/)."""
    for name in SYNCS:
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *a, _orig=orig, _name=name, **k):
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if "/dapt/" in caller and "/tests/" not in caller and not caller.endswith(DATA_SIDE):
                log.append((_name, caller, sys._getframe(1).f_lineno))
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)


@pytest.mark.parametrize("trainer", ["CoOp", "MaPLe", "MaPLe+DAPT-S"])
def test_no_host_sync_outside_log_points(tiny_name, tmp_path, monkeypatch, trainer):
    if trainer == "MaPLe+DAPT-S":
        from test_dapt_train import make_cfg as dapt_cfg
        from test_dapt_train import stand_in_dm

        cfg = dapt_cfg(tiny_name, tmp_path / "out", "precomputed")
        cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 2  # 9 images: 4 steps per epoch, the last one a log point
        cfg.TRAIN.PRINT_FREQ = 1000
        cfg.TEST.NO_TEST = True
        cfg.TRAINER.NAME = "MaPLe"
        tr = build_trainer(cfg, dm=stand_in_dm(tmp_path / "data"))
    else:
        cfg = make_cfg(tiny_name, tmp_path / "out", trainer)
        tr = build_trainer(cfg, dm=make_dm(batch_size=8, n_train=8))  # 32 images: 4 steps per epoch
    tr.init_writer = lambda: setattr(tr, "_writer", FakeWriter())
    syncs = []
    per_step = []
    step = tr.forward_backward

    def observed(batch):
        before = len(syncs)
        out = step(batch)
        per_step.append((tr.epoch, tr.batch_idx, before))
        return out

    tr.forward_backward = observed
    hook_calls = []

    class After:
        trainer = None

        def before_train(self): pass
        def before_epoch(self): pass
        def after_epoch(self): pass
        def after_train(self): pass

        def after_step(self, losses):  # the moment a step is done: syncs so far belong to it
            hook_calls.append(len(syncs))

    tr.register_hooks([After()])
    counting(monkeypatch, syncs)
    tr.train()
    monkeypatch.undo()
    assert len(hook_calls) == 8
    # a non-log step (batches 1-3 of 4): no conversion between its start and the next step's start.
    # The very first step reads each fixed token-id tensor's length once (kept on the tensor after it).
    starts = [b for (_, _, b) in per_step] + [len(syncs)]
    first = syncs[starts[0]:starts[1]]
    assert all(f.endswith("models/text_encoder.py") for _, f, _ in first), first
    for i, (epoch, batch_idx, begin) in enumerate(per_step):
        if batch_idx < 3 and i > 0:
            assert starts[i + 1] == begin, (epoch, batch_idx, syncs[begin:starts[i + 1]])
    assert syncs, "the log points do convert (the counter sees dapt's conversions)"


def test_logged_averages_equal_the_returned_losses(tiny_name, tmp_path):
    cfg = make_cfg(tiny_name, tmp_path / "out", "MaPLe")
    cfg.TRAIN.PRINT_FREQ = 2
    tr = build_trainer(cfg, dm=make_dm(batch_size=8, n_train=8))
    writer = FakeWriter()
    tr.init_writer = lambda: setattr(tr, "_writer", writer)
    returned = []
    step = tr.forward_backward

    def observed(batch):
        out = step(batch)
        returned.append((tr.epoch, tr.global_step, {k: v.clone() for k, v in out.items()}))
        assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in out.values())
        return out

    tr.forward_backward = observed
    tr.train()
    last = [r for e, _, r in returned if e == cfg.OPTIM.MAX_EPOCH - 1]
    assert set(tr.epoch_meters) == set(last[0]) >= {"loss", "acc"}
    for k, meter in tr.epoch_meters.items():
        vals = [float(r[k]) for r in last]  # the old computation: host floats, averaged on the host
        assert meter.avg == pytest.approx(sum(vals) / len(vals), rel=1e-12, abs=1e-12), k
        assert meter.val == float(last[-1][k])
        assert meter.count == len(vals)
    # tensorboard: every step's value, at its step, flushed by the end of training
    got = {(tag, step): v for tag, v, step in writer.scalars}
    for _, gstep, r in returned:
        for k, v in r.items():
            assert got[(f"train/{k}", gstep)] == pytest.approx(float(v), rel=1e-6), (k, gstep)
    assert not tr._pending_scalars
