"""The training engine: epoch loop, hooks, evaluation, checkpoints, resume, logging.

A trainer subclass builds a model whose learnable state is small (the prompts); it implements
``build_model`` and ``compute_losses`` (a dict of named loss terms). The engine sums the terms,
backpropagates (with autocast / GradScaler on CUDA when the method asks for it), steps, and logs
every term separately. Side concerns (DAPT-G mask refresh, ...) are hooks.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional

import torch
from tqdm import tqdm

from dapt.engine import dist as distributed
from dapt.engine.checkpoint import (
    get_rng_state,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from dapt.engine.evaluator import build_evaluator
from dapt.engine.optim import build_lr_scheduler, build_optimizer
from dapt.utils.logging import AverageMeter
from dapt.utils.misc import resolve_device

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "amp", "bf16")


class HookBase:
    """Called by the trainer around training; override what you need."""

    trainer: "TrainerBase"

    def before_train(self):
        pass

    def before_epoch(self):
        pass

    def after_step(self, losses: Dict[str, float]):
        pass

    def after_epoch(self):
        pass

    def after_train(self):
        pass


class TrainerBase:
    """Epoch loop with Dassl's behaviour and names.

    Subclasses set ``checkpoint_name`` (the folder under OUTPUT_DIR, Dassl's registered model
    name) and implement ``build_model`` (sets ``self.model``), ``compute_losses`` and
    ``model_inference``.
    """

    checkpoint_name = "model"

    def __init__(self, cfg, dm=None):
        self.cfg = cfg
        self.distributed = distributed.init_distributed(cfg.USE_CUDA)
        self.device = resolve_device(cfg)
        if self.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", distributed.local_rank())
        self.output_dir = Path(cfg.OUTPUT_DIR)
        self.start_epoch = 0
        self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.hooks: List[HookBase] = []
        self._writer = None
        self.best_result = float("-inf")
        self.global_step = 0
        self.dm = dm if dm is not None else self.build_data_loader()
        self.multi_label = bool(getattr(self.dm.dataset, "multi_label", False))
        self.build_model()
        self.model.to(self.device)
        self.precision = self.resolve_precision()
        params = list(self.trainable_parameters())
        distributed.broadcast_parameters(params)
        self.optim = build_optimizer(params, cfg.OPTIM) if params else None
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM) if params else None
        # fp16 autocast ("fp16" and upstream's "amp") needs loss scaling; bf16 does not
        self.scaler = (torch.amp.GradScaler("cuda")
                       if self.precision in ("fp16", "amp") and self.device.type == "cuda" else None)
        self.evaluator = build_evaluator(cfg, self.dm.lab2cname, multi_label=self.multi_label)

    # ------------------------------------------------------------------ to override
    def build_data_loader(self):
        from dapt.data.data_manager import DataManager

        return DataManager(self.cfg)

    def build_model(self) -> None:
        raise NotImplementedError

    def compute_losses(self, batch) -> "tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]":
        """Return ({name: loss}, logits-or-None for the training accuracy)."""
        raise NotImplementedError

    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def method_precision(self) -> str:
        """The precision the method's config asks for (e.g. TRAINER.COOP.PREC)."""
        return "fp32"

    def get_model_state(self) -> "OrderedDict[str, torch.Tensor]":
        """The learnable state that goes into a checkpoint."""
        return OrderedDict((k, v.detach().cpu()) for k, v in self.model.state_dict().items())

    def load_model_state(self, state: Dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def trainable_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ helpers
    def register_hooks(self, hooks: List[HookBase]) -> None:
        for h in hooks:
            h.trainer = self
            self.hooks.append(h)

    def resolve_precision(self) -> str:
        prec = self.method_precision()
        if prec not in PRECISIONS:
            raise ValueError(f"precision '{prec}' is not supported; use one of {', '.join(PRECISIONS)}")
        if self.device.type != "cuda" and prec != "fp32":
            logger.info("Precision %s requested, running fp32 on %s", prec, self.device.type)
            return "fp32"
        return prec

    def autocast(self):
        if self.device.type == "cuda" and self.precision in ("fp16", "amp"):
            return torch.autocast("cuda", dtype=torch.float16)
        if self.device.type == "cuda" and self.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / self.checkpoint_name

    def get_current_lr(self) -> float:
        return self.optim.param_groups[0]["lr"] if self.optim is not None else 0.0

    @property
    def is_main(self) -> bool:
        return distributed.is_main_process()

    def writer_add_scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, value, step)

    def init_writer(self) -> None:
        if self._writer is None and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def parse_batch(self, batch):
        images = batch["img"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        return images, labels

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, val_result: Optional[float] = None) -> dict:
        return {
            "state_dict": self.get_model_state(),
            "epoch": self.epoch + 1,
            "optimizer": self.optim.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "val_result": val_result,
            "best_result": self.best_result,
            "global_step": self.global_step,
            "rng": get_rng_state(),
        }

    def resume_if_exists(self, directory: Path) -> int:
        """Resume from the latest ``model.pth.tar-N`` under ``directory/<name>``; return the start epoch."""
        path = latest_checkpoint(Path(directory) / self.checkpoint_name)
        if path is None:
            return 0
        ckpt = load_checkpoint(path)
        self.load_model_state(ckpt["state_dict"])
        self.optim.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.best_result = ckpt.get("best_result", float("-inf"))
        self.global_step = ckpt.get("global_step", 0)
        set_rng_state(ckpt["rng"])
        logger.info("Resumed from %s (epoch %d)", path, ckpt["epoch"])
        return int(ckpt["epoch"])

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load weights for evaluation: ``model-best.pth.tar``, or ``model.pth.tar-<epoch>``."""
        if not directory:
            raise ValueError("--model-dir is required with --eval-only")
        folder = Path(directory) / self.checkpoint_name
        name = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        path = folder / name
        if epoch is None and not path.is_file():
            latest = latest_checkpoint(folder)
            if latest is None:
                raise FileNotFoundError(f"no checkpoint in {folder}: expected {name} or model.pth.tar-N; check --model-dir")
            path = latest
        ckpt = load_checkpoint(path)
        self.load_model_state(ckpt["state_dict"])
        logger.info("Loaded model weights from %s (epoch %s)", path, ckpt.get("epoch"))

    # ------------------------------------------------------------------ loop
    def train(self) -> None:
        if self.optim is None:
            logger.info("%s has nothing to train; evaluating", type(self).__name__)
            self._time_start = time.time()
            if not self.cfg.TEST.NO_TEST:
                self.test()
            return
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        from dapt.engine.selection import select_training_data

        select_training_data(self)  # data-efficient setting: DATASET.SELECTION_RATIO < 1 sub-selects train_x
        directory = self.cfg.RESUME or self.output_dir
        self.start_epoch = self.resume_if_exists(directory)
        self.init_writer()
        self._time_start = time.time()
        for h in self.hooks:
            h.before_train()

    def before_epoch(self) -> None:
        for h in self.hooks:
            h.before_epoch()

    def set_model_mode(self, mode: str) -> None:
        self.model.train(mode == "train")

    def distributed_loader(self, loader):
        """The same loader over this process's shard (DistributedSampler), built once."""
        from torch.utils.data import DataLoader, RandomSampler
        from torch.utils.data.distributed import DistributedSampler

        if not self.distributed or isinstance(loader.sampler, DistributedSampler):
            return loader
        sampler = DistributedSampler(loader.dataset, shuffle=isinstance(loader.sampler, RandomSampler),
                                     seed=max(self.cfg.SEED, 0), drop_last=loader.drop_last)
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                          num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                          drop_last=loader.drop_last, pin_memory=loader.pin_memory,
                          worker_init_fn=loader.worker_init_fn)

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        meters: Dict[str, AverageMeter] = {}
        loader = self.dm.train_loader_x = self.distributed_loader(self.dm.train_loader_x)
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(self.epoch)
        num_batches = len(loader)
        bar = tqdm(loader, total=num_batches, desc=f"epoch {self.epoch + 1}/{self.max_epoch}", leave=False,
                   disable=not (self.cfg.VERBOSE and self.is_main))
        t0 = time.time()
        for self.batch_idx, batch in enumerate(bar):
            summary = self.forward_backward(batch)
            for k, v in summary.items():
                meters.setdefault(k, AverageMeter()).update(v)
            for h in self.hooks:
                h.after_step(summary)
            lr = self.get_current_lr()
            for k, v in summary.items():
                self.writer_add_scalar(f"train/{k}", v, self.global_step)
            self.writer_add_scalar("train/lr", lr, self.global_step)
            self.global_step += 1
            bar.set_postfix(loss=f"{meters['loss'].avg:.4f}" if "loss" in meters else "")
            freq = self.cfg.TRAIN.PRINT_FREQ
            if (self.batch_idx + 1) % max(freq, 1) == 0 or (self.batch_idx + 1) == num_batches:
                done = self.epoch * num_batches + self.batch_idx + 1
                total = self.max_epoch * num_batches
                elapsed = time.time() - t0
                eta = elapsed / (self.batch_idx + 1) * (total - done)
                terms = " ".join(f"{k} {m.val:.4f} ({m.avg:.4f})" for k, m in meters.items())
                logger.info("epoch [%d/%d] batch [%d/%d] %s lr %.4e eta %s", self.epoch + 1, self.max_epoch,
                            self.batch_idx + 1, num_batches, terms, lr, datetime.timedelta(seconds=int(eta)))
        self.epoch_meters = meters

    def forward_backward(self, batch) -> Dict[str, float]:
        with self.autocast():
            losses, logits = self.compute_losses(batch)
        total = sum(losses.values())
        self.optim.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            distributed.average_gradients(self.trainable_parameters())
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            total.backward()
            distributed.average_gradients(self.trainable_parameters())
            self.optim.step()
        summary = OrderedDict(loss=float(total.detach()))
        if len(losses) > 1 or "loss" not in losses:
            for k, v in losses.items():
                summary[f"loss_{k}"] = float(v.detach())
        if logits is not None and not self.multi_label:
            labels = batch["label"].to(logits.device)
            summary["acc"] = 100.0 * float((logits.argmax(dim=1) == labels).float().mean())
        return summary

    def after_epoch(self) -> None:
        for h in self.hooks:
            h.after_epoch()
        last = (self.epoch + 1) == self.max_epoch
        do_val = self.cfg.TEST.FINAL_MODEL == "best_val" and not self.cfg.TEST.NO_TEST
        is_best, val_result = False, None
        if do_val:
            val_result = self.test(split="val")
            if val_result > self.best_result:
                self.best_result, is_best = val_result, True
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        save_epoch = last or (freq > 0 and (self.epoch + 1) % freq == 0)
        self.sched.step()
        if (save_epoch or is_best) and self.is_main:
            save_checkpoint(self.checkpoint_state(val_result), self.checkpoint_dir, self.epoch + 1,
                            is_best=is_best, save_epoch=save_epoch)
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()  # the other processes may read what rank 0 just wrote (best model)

    def after_train(self) -> None:
        for h in self.hooks:
            h.after_train()
        logger.info("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                logger.info("Deploy the model with the best val performance")
                self.load_model(str(self.output_dir))
            else:
                logger.info("Deploy the last-epoch model")
            self.test()
        elapsed = datetime.timedelta(seconds=int(time.time() - self._time_start))
        logger.info("Elapsed: %s", elapsed)
        self.close_writer()

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on ``split`` (default TEST.SPLIT); log Dassl's lines; return the main metric."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        loader = self.dm.val_loader if split == "val" else self.dm.test_loader
        if loader is None:
            logger.info("No %s split; using the test split", split)
            loader, split = self.dm.test_loader, "test"
        logger.info("Evaluate on the *%s* set", split)
        for batch in tqdm(loader, desc=f"eval {split}", leave=False, disable=not (self.cfg.VERBOSE and self.is_main)):
            images, labels = self.parse_batch(batch)
            with self.autocast():
                logits = self.model_inference(images)
            self.evaluator.process(logits.float(), labels)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.writer_add_scalar(f"{split}/{k}", v, self.epoch)
        self.last_results = results
        return list(results.values())[0]
