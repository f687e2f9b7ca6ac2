"""Optimizers and learning-rate schedules with Dassl's semantics, on torch's schedulers.

Dassl steps the schedule once per epoch. With a warm-up of W epochs, epochs 0..W-1 use the
warm-up lr (constant WARMUP_CONS_LR, or linear: WARMUP_MIN_LR at epoch 0 then base*e/W) and,
with WARMUP_RECOUNT (default), the main schedule starts from its own epoch 0 at epoch W. The
main schedule is defined over MAX_EPOCH epochs (not MAX_EPOCH - W), exactly as Dassl builds it.
"""
from __future__ import annotations

import logging
import math
from typing import Iterable

import torch

logger = logging.getLogger(__name__)

AVAILABLE_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
AVAILABLE_SCHEDULERS = ("single_step", "multi_step", "cosine")


def build_optimizer(params: Iterable[torch.nn.Parameter], optim_cfg) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW / RMSprop from an OPTIM config node."""
    name = optim_cfg.NAME.lower()
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; check the method's prompt settings")
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=(optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=(optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, momentum=optim_cfg.MOMENTUM, alpha=optim_cfg.RMSPROP_ALPHA)
    raise ValueError(f"OPTIM.NAME '{optim_cfg.NAME}' is not supported; choose one of {', '.join(AVAILABLE_OPTIMIZERS)}")


def _stepsizes(optim_cfg):
    steps = optim_cfg.STEPSIZE
    if isinstance(steps, int):
        steps = (steps,)
    return [int(s) for s in steps]


def main_schedule_factor(epoch: int, optim_cfg) -> float:
    """Multiplier of the base lr of the main (post-warm-up) schedule at its own epoch count."""
    name = optim_cfg.LR_SCHEDULER
    max_epoch = optim_cfg.MAX_EPOCH
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max_epoch))
    if name == "single_step":
        step = _stepsizes(optim_cfg)[0]
        if step <= 0:
            step = max_epoch
        return optim_cfg.GAMMA ** (epoch // step)
    if name == "multi_step":
        milestones = _stepsizes(optim_cfg)
        return optim_cfg.GAMMA ** sum(1 for m in milestones if m <= epoch)
    raise ValueError(
        f"OPTIM.LR_SCHEDULER '{name}' is not supported; choose one of {', '.join(AVAILABLE_SCHEDULERS)}"
    )


def lr_factor(epoch: int, optim_cfg, base_lr: float) -> float:
    """Multiplier of ``base_lr`` at a (0-based) epoch, warm-up included."""
    warmup = optim_cfg.WARMUP_EPOCH
    if warmup > 0 and epoch < warmup:
        if optim_cfg.WARMUP_TYPE == "constant":
            return optim_cfg.WARMUP_CONS_LR / base_lr
        if optim_cfg.WARMUP_TYPE == "linear":
            return optim_cfg.WARMUP_MIN_LR / base_lr if epoch == 0 else epoch / warmup
        raise ValueError(f"OPTIM.WARMUP_TYPE '{optim_cfg.WARMUP_TYPE}' is not supported; use constant or linear")
    if warmup > 0:
        if optim_cfg.WARMUP_RECOUNT:
            return main_schedule_factor(epoch - warmup, optim_cfg)
        # Dassl without recount: the first post-warm-up epoch keeps the base lr, then the
        # main schedule continues from the absolute epoch.
        return 1.0 if epoch == warmup else main_schedule_factor(epoch, optim_cfg)
    return main_schedule_factor(epoch, optim_cfg)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-epoch ``LambdaLR`` that reproduces Dassl's warm-up + main schedule."""
    main_schedule_factor(0, optim_cfg)  # validate the name now, not at the end of epoch 0
    base_lr = optim_cfg.LR
    if 0 < optim_cfg.MAX_EPOCH <= optim_cfg.WARMUP_EPOCH:
        logger.warning("OPTIM.MAX_EPOCH %d <= OPTIM.WARMUP_EPOCH %d: every epoch runs at the warm-up learning rate, "
                       "so the prompts barely train; raise OPTIM.MAX_EPOCH or set OPTIM.WARMUP_EPOCH 0",
                       optim_cfg.MAX_EPOCH, optim_cfg.WARMUP_EPOCH)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, optim_cfg, base_lr))
