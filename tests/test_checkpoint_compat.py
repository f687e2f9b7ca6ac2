"""Released Dassl-style checkpoints (MaPLe / PromptSRC / PromptKD) hold their scheduler's successor
object, and with it the optimizer, pickled inside: they load with weights_only, no code runs."""
import os
import pickle

import pytest
import torch

from dapt.engine.checkpoint import CheckpointError, InertObject, load_checkpoint


def dassl_checkpoint(path):
    p = torch.nn.Parameter(torch.randn(3, 4))
    opt = torch.optim.SGD([p], lr=0.0025, momentum=0.9)
    p.grad = torch.ones_like(p)
    opt.step()  # momentum buffers in the optimizer state (a defaultdict)
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    # what Dassl's ConstantWarmupScheduler.state_dict() returns: its __dict__ minus the optimizer
    sched = {"successor": successor, "warmup_epoch": 1, "cons_lr": 1e-5, "last_epoch": 20, "base_lrs": [0.0025]}
    torch.save({"state_dict": {"prompt_learner.ctx": p.detach().half()}, "epoch": 20, "optimizer": opt.state_dict(),
                "scheduler": sched, "val_result": None}, path)
    return p.detach().half()


def test_dassl_checkpoint_with_scheduler_objects_loads(tmp_path):
    path = tmp_path / "model.pth.tar-20"
    ctx = dassl_checkpoint(path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what a plain weights_only load does with it
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["state_dict"]["prompt_learner.ctx"], ctx) and ckpt["epoch"] == 20
    succ = ckpt["scheduler"]["successor"]
    assert type(succ) is InertObject and succ.fields["T_max"] == 20
    assert type(succ.fields["optimizer"]) is InertObject  # the optimizer object, inert as well


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_code_in_a_checkpoint_is_still_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.pth.tar-1"
    with open(path, "wb") as f:
        torch.save({"state_dict": {}, "x": Payload()}, f, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    assert not (tmp_path / "pwned_marker").exists()
