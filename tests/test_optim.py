import pytest
import torch

from dapt.config import get_cfg_default
from dapt.engine.optim import build_lr_scheduler, build_optimizer


def lrs(optim_cfg, epochs):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], optim_cfg)
    sched = build_lr_scheduler(opt, optim_cfg)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def torch_reference(sched_cls, epochs, **kw):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.0035)
    s = sched_cls(opt, **kw)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return out


def test_cosine_constant_warmup_matches_dassl():
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR, cfg.MAX_EPOCH, cfg.LR_SCHEDULER = "sgd", 0.0035, 5, "cosine"
    cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE, cfg.WARMUP_CONS_LR = 1, "constant", 1e-5
    got = lrs(cfg, 5)
    # Dassl: epoch 0 at the warm-up lr, then torch's cosine over MAX_EPOCH restarted at 0
    ref = [1e-5] + torch_reference(torch.optim.lr_scheduler.CosineAnnealingLR, 4, T_max=5)
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_linear_warmup_and_multistep():
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR, cfg.MAX_EPOCH, cfg.LR_SCHEDULER = "sgd", 0.0035, 8, "multi_step"
    cfg.STEPSIZE, cfg.GAMMA = (2, 4), 0.5
    cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE, cfg.WARMUP_MIN_LR = 2, "linear", 1e-5
    got = lrs(cfg, 8)
    main = torch_reference(torch.optim.lr_scheduler.MultiStepLR, 6, milestones=[2, 4], gamma=0.5)
    assert got == pytest.approx([1e-5, 0.0035 / 2] + main)


def test_single_step_no_warmup():
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR, cfg.MAX_EPOCH, cfg.LR_SCHEDULER, cfg.STEPSIZE, cfg.GAMMA = "sgd", 0.0035, 6, "single_step", (2,), 0.1
    assert lrs(cfg, 6) == pytest.approx(torch_reference(torch.optim.lr_scheduler.StepLR, 6, step_size=2, gamma=0.1))


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_optimizers(name, cls):
    cfg = get_cfg_default().OPTIM
    cfg.NAME = name
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    assert isinstance(opt, cls) and opt.param_groups[0]["weight_decay"] == cfg.WEIGHT_DECAY


def test_bad_names_are_clear():
    cfg = get_cfg_default().OPTIM
    cfg.NAME = "lion"
    with pytest.raises(ValueError, match="OPTIM.NAME 'lion'"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    cfg.NAME, cfg.LR_SCHEDULER = "sgd", "poly"
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    with pytest.raises(ValueError, match="OPTIM.LR_SCHEDULER 'poly'"):
        build_lr_scheduler(opt, cfg)


@pytest.mark.parametrize("max_epoch,warns", [(1, True), (2, False)])
def test_warns_when_training_never_leaves_the_warm_up(caplog, max_epoch, warns):
    cfg = get_cfg_default().OPTIM.clone()
    cfg.defrost()
    cfg.MAX_EPOCH, cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE, cfg.LR = max_epoch, 1, "constant", 0.0035
    with caplog.at_level("WARNING", logger="dapt.engine.optim"):
        got = lrs(cfg, max_epoch)
    assert got[0] == pytest.approx(1e-5)  # the warm-up epoch runs at WARMUP_CONS_LR
    hits = [r for r in caplog.records if "WARMUP_EPOCH" in r.getMessage()]
    assert bool(hits) == warns
