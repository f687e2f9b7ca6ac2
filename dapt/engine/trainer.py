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
    CheckpointError,
    get_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    nonfinite_tensors,
    save_checkpoint,
    set_rng_state,
)
from dapt.engine.evaluator import build_evaluator
from dapt.engine.optim import build_lr_scheduler, build_optimizer
from dapt.utils.misc import resolve_device

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "amp", "bf16")


class TrainingDiverged(RuntimeError):
    """A loss or a weight became NaN/inf; nothing non-finite was saved (one line for the user)."""


class NonFiniteGuard:
    """Records, on the device, the first step at which each loss term was not finite, and (fp16 loss
    scaling) the longest run of optimizer steps the scaler skipped in a row. ``record`` queues a few
    tiny device ops and never waits for the device; ``first_failure`` syncs once (log points,
    before a checkpoint)."""

    def __init__(self, device: torch.device, use_scaler: bool, max_skipped: int):
        self.device = device
        self.use_scaler = use_scaler
        self.max_skipped = max(int(max_skipped), 1)
        self.first_bad: Dict[str, torch.Tensor] = {}
        self.steps: Dict[int, tuple] = {}  # global step -> (epoch, batch), 1-based, since the last check
        self.skips = torch.zeros((), dtype=torch.long, device=device)  # current run of skipped steps
        self.max_skips = torch.zeros((), dtype=torch.long, device=device)
        self.skip_end = torch.full((), -1, dtype=torch.long, device=device)  # step where that run reached the limit

    def record(self, step: int, epoch: int, batch: int, terms: Dict[str, torch.Tensor],
               skipped: Optional[torch.Tensor] = None) -> None:
        self.steps[step] = (epoch + 1, batch + 1)
        for name, value in terms.items():
            bad = ~torch.isfinite(value.detach()).all()
            prev = self.first_bad.get(name)
            if prev is None:
                prev = self.first_bad[name] = torch.full((), -1, dtype=torch.long, device=self.device)
            self.first_bad[name] = torch.where(bad & (prev < 0), torch.full_like(prev, step), prev)
        if skipped is not None:
            self.skips = torch.where(skipped, self.skips + 1, torch.zeros_like(self.skips))
            hit = (self.skips >= self.max_skipped) & (self.skip_end < 0)
            self.skip_end = torch.where(hit, torch.full_like(self.skip_end, step), self.skip_end)
            self.max_skips = torch.maximum(self.max_skips, self.skips)

    def first_failure(self, distributed_run: bool = False) -> Optional[str]:
        """None if every recorded step was fine; else a description naming epoch, step and term."""
        names = list(self.first_bad)
        vals = torch.stack([self.first_bad[n] for n in names] + [self.skip_end]) if names else self.skip_end.view(1)
        if distributed_run:
            import torch.distributed as dist

            flag = (vals >= 0).any().long().view(1)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            other = bool(flag.item())
        else:
            other = False
        vals = vals.tolist()
        term_steps = dict(zip(names, vals[:len(names)]))
        skip_end = vals[-1]
        msg = None
        if self.use_scaler:
            if skip_end >= 0:
                epoch, batch = self.steps.get(skip_end, ("?", "?"))
                bad = [n for n, s in term_steps.items() if s >= 0]
                msg = (f"{self.max_skipped} optimizer steps in a row skipped by the fp16 loss scaler (inf/NaN "
                       f"gradients), up to epoch {epoch} step {batch}"
                       + (f"; non-finite loss term(s): {', '.join(bad)}" if bad else ""))
        else:
            bad_steps = [s for s in term_steps.values() if s >= 0]
            if bad_steps:
                first = min(bad_steps)
                epoch, batch = self.steps.get(first, ("?", "?"))
                terms = [n for n, s in term_steps.items() if s == first]
                msg = f"non-finite loss at epoch {epoch} step {batch} (term {', '.join(terms)})"
        if msg is None and other:
            msg = "another process saw a non-finite loss"
        if msg is None:
            self.steps.clear()
        return msg


class DeviceMeter:
    """Running average of a scalar that may live on the device: ``update`` queues an addition and
    never waits for the device; reading ``val`` / ``avg`` converts (one host sync, at log points)."""

    def __init__(self):
        self._val, self._sum, self.count = 0.0, 0.0, 0

    def update(self, val, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):  # summed in float64 as the host did (MPS has no float64)
            val = val.detach().to(torch.float32 if val.device.type == "mps" else torch.float64)
        self._val = val
        self._sum = self._sum + val * n
        self.count += n

    @property
    def val(self) -> float:
        return float(self._val)

    @property
    def sum(self) -> float:
        return float(self._sum)

    @property
    def avg(self) -> float:
        return float(self._sum) / max(self.count, 1)


class HookBase:
    """Called by the trainer around training; override what you need. ``after_step`` gets the step's
    summary as 0-dim device tensors: convert them only at log points (a ``float()`` per step stalls
    the device), or pass them to ``trainer.writer_add_scalar``, which buffers device values."""

    trainer: "TrainerBase"

    def before_train(self):
        pass

    def before_epoch(self):
        pass

    def after_step(self, losses: Dict[str, torch.Tensor]):
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
        from dapt.engine.curves import CurvesHook
        self.register_hooks([CurvesHook()])  # curves.png / curves.json in the run folder, every epoch
        self._writer = None
        self._pending_scalars: List[tuple] = []  # (tag, device value, step) written at the next log point
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
        self.nonfinite = NonFiniteGuard(self.device, self.scaler is not None, cfg.TRAIN.MAX_SKIPPED_STEPS)

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

    def writer_add_scalar(self, tag: str, value, step: int) -> None:
        """A tensorboard scalar; a tensor value is kept on the device until ``flush_scalars`` (log points)."""
        if self._writer is None:
            return
        if isinstance(value, torch.Tensor):
            self._pending_scalars.append((tag, value.detach().reshape(()).float(), step))
        else:
            self._writer.add_scalar(tag, value, step)

    def flush_scalars(self) -> None:
        """Write the buffered device scalars (one host sync for all of them)."""
        pending, self._pending_scalars = self._pending_scalars, []
        if self._writer is None or not pending:
            return
        values = torch.stack([v.to(pending[0][1].device) for _, v, _ in pending]).tolist()
        for (tag, _, step), value in zip(pending, values):
            self._writer.add_scalar(tag, value, step)

    def init_writer(self) -> None:
        if self._writer is None and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def close_writer(self) -> None:
        self.flush_scalars()
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

    def resume_if_exists(self, directory: Path, required: bool = False) -> int:
        """Resume from the latest readable ``model.pth.tar-N`` under ``directory/<name>``; return the start
        epoch. An unreadable latest checkpoint is skipped with a warning (the previous one is used);
        when checkpoints exist but none is readable, or ``required`` and there is none, stop."""
        folder = Path(directory) / self.checkpoint_name
        found = list_checkpoints(folder)
        if not found:
            if required:
                raise FileNotFoundError(f"--resume {directory}: no checkpoint model.pth.tar-N in {folder}; "
                                        "check the folder (a run saves one per TRAIN.CHECKPOINT_FREQ epochs)")
            return 0
        ckpt, path, skipped = None, None, []
        for candidate in found:
            try:
                ckpt = load_checkpoint(candidate)
                missing = [k for k in ("state_dict", "optimizer", "scheduler", "epoch", "rng") if k not in ckpt]
                if missing:
                    raise CheckpointError(f"checkpoint {candidate} lacks {', '.join(missing)}")
                bad = nonfinite_tensors(ckpt["state_dict"])
                if bad:
                    raise CheckpointError(f"checkpoint {candidate} holds NaN/inf in {bad[0]}")
            except CheckpointError as exc:
                skipped.append(candidate.name)
                logger.warning("WARNING: %s; falling back to the previous checkpoint", exc)
                ckpt = None
                continue
            path = candidate
            break
        if ckpt is None:
            raise CheckpointError(f"no readable checkpoint in {folder} (tried {', '.join(skipped)}); "
                                  "move the folder aside or rerun with --fresh to start again")
        try:
            self.load_model_state(ckpt["state_dict"])
            self.optim.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            if self.scaler is not None and ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"checkpoint {path} does not fit this model ({first}); "
                                  "the run's config changed: use another --output-dir or --fresh") from exc
        self.load_extra_state(ckpt, path)
        self.best_result = ckpt.get("best_result", float("-inf"))
        self.global_step = ckpt.get("global_step", 0)
        set_rng_state(ckpt["rng"])
        logger.info("Resumed from %s (epoch %d)", path, ckpt["epoch"])
        return int(ckpt["epoch"])

    def load_extra_state(self, ckpt: dict, path: Path) -> None:
        """Restore what a subclass added in ``checkpoint_state`` (called on resume, with the checkpoint
        actually resumed from)."""

    def check_training_data(self) -> None:
        """Stop with one line when there is nothing to train on (an empty training split)."""
        if self.optim is None:
            return
        loader = getattr(self.dm, "train_loader_x", None)
        train_x = getattr(getattr(self.dm, "dataset", None), "train_x", None)  # a hook may build the loader later
        if (loader is None or len(loader) == 0) and not train_x:
            d = self.cfg.DATASET
            raise ValueError(f"the training set of {d.NAME or 'the dataset'} is empty (DATASET.ROOT {d.ROOT!r}, "
                             f"NUM_SHOTS {d.NUM_SHOTS}, SUBSAMPLE_CLASSES {d.SUBSAMPLE_CLASSES}); check the "
                             "dataset folder and its split file")

    def check_finite(self) -> None:
        """Raise TrainingDiverged if a loss was not finite since the last check (one host sync)."""
        failure = self.nonfinite.first_failure(self.distributed)
        if failure is not None:
            last = latest_checkpoint(self.checkpoint_dir)
            keep = f"the last good checkpoint is {last}" if last else "no checkpoint was saved"
            raise TrainingDiverged(f"training diverged: {failure}; nothing was saved after it ({keep}); "
                                   "lower OPTIM.LR or check the data and the config")

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
        self.check_training_data()
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
        self.start_epoch = self.resume_if_exists(directory, required=bool(self.cfg.RESUME))
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
                          worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers)

    def run_epoch(self) -> None:
        """One epoch. The step's loss terms stay on the device (meters and tensorboard values
        accumulate there); the host waits for the device only at log points (every
        TRAIN.PRINT_FREQ steps and the epoch's last step)."""
        self.set_model_mode("train")
        meters: Dict[str, DeviceMeter] = {}
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
                meters.setdefault(k, DeviceMeter()).update(v)
            for h in self.hooks:
                h.after_step(summary)
            lr = self.get_current_lr()
            for k, v in summary.items():
                self.writer_add_scalar(f"train/{k}", v, self.global_step)
            self.writer_add_scalar("train/lr", lr, self.global_step)
            self.global_step += 1
            freq = self.cfg.TRAIN.PRINT_FREQ
            if (self.batch_idx + 1) % max(freq, 1) == 0 or (self.batch_idx + 1) == num_batches:
                self.check_finite()
                self.flush_scalars()
                bar.set_postfix(loss=f"{meters['loss'].avg:.4f}" if "loss" in meters else "")
                done = self.epoch * num_batches + self.batch_idx + 1
                total = self.max_epoch * num_batches
                elapsed = time.time() - t0
                eta = elapsed / (self.batch_idx + 1) * (total - done)
                terms = " ".join(f"{k} {m.val:.4f} ({m.avg:.4f})" for k, m in meters.items())
                logger.info("epoch [%d/%d] batch [%d/%d] %s lr %.4e eta %s", self.epoch + 1, self.max_epoch,
                            self.batch_idx + 1, num_batches, terms, lr, datetime.timedelta(seconds=int(eta)))
        self.epoch_meters = meters

    def forward_backward(self, batch) -> Dict[str, torch.Tensor]:
        """One optimisation step; returns the logged values as 0-dim device tensors (no host sync)."""
        with self.autocast():
            losses, logits = self.compute_losses(batch)
        total = sum(losses.values())
        self.optim.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            distributed.average_gradients(self.trainable_parameters())
            scale = getattr(self.scaler, "_scale", None)
            before = scale.detach().clone() if isinstance(scale, torch.Tensor) else self.scaler.get_scale()
            self.scaler.step(self.optim)
            self.scaler.update()
            scale = getattr(self.scaler, "_scale", None)
            after = scale if isinstance(scale, torch.Tensor) else self.scaler.get_scale()
            # the scaler lowers its scale exactly when it skipped the step (inf/NaN gradients)
            skipped = torch.as_tensor(after < before, device=self.device)
            self.nonfinite.record(self.global_step, self.epoch, getattr(self, "batch_idx", 0),
                                  {**losses, "total": total}, skipped)
        else:
            self.nonfinite.record(self.global_step, self.epoch, getattr(self, "batch_idx", 0),
                                  {**losses, "total": total})
            total.backward()
            distributed.average_gradients(self.trainable_parameters())
            self.optim.step()
        summary = OrderedDict(loss=total.detach())
        if len(losses) > 1 or "loss" not in losses:
            for k, v in losses.items():
                summary[f"loss_{k}"] = v.detach()
        if logits is not None and not self.multi_label:
            labels = batch["label"].to(logits.device, non_blocking=True)
            summary["acc"] = 100.0 * (logits.detach().argmax(dim=1) == labels).float().mean()
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
        self.check_finite()
        if (save_epoch or is_best) and self.is_main:
            state = self.checkpoint_state(val_result)
            bad = nonfinite_tensors({"state_dict": state["state_dict"], "optimizer": state["optimizer"]})
            if bad:
                last = latest_checkpoint(self.checkpoint_dir)
                keep = f"the last good checkpoint is {last}" if last else "no checkpoint was saved"
                raise TrainingDiverged(f"training diverged: {bad[0]} holds NaN/inf after epoch {self.epoch + 1}; "
                                       f"not saved ({keep}); lower OPTIM.LR or check the data and the config")
            save_checkpoint(state, self.checkpoint_dir, self.epoch + 1,
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

    def _predict(self, loader, name: str):
        """(logits, labels) of every batch of ``loader``, with a progress bar named ``eval <name>``."""
        for batch in tqdm(loader, desc=f"eval {name}", leave=False, disable=not (self.cfg.VERBOSE and self.is_main)):
            images, labels = self.parse_batch(batch)
            with self.autocast():
                logits = self.model_inference(images)
            yield logits, labels

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
        # the class text features of a method whose texts do not depend on the image: once per evaluation
        text_cache = getattr(self.model, "text_cache", None)
        extra_loaders = (getattr(self.dm, "extra_test_loaders", None) or {}) if split == "test" else {}
        extra = {}
        with text_cache() if callable(text_cache) else contextlib.nullcontext():
            for logits, labels in self._predict(loader, split):
                self.evaluator.process(logits.float(), labels)
            for name, extra_loader in extra_loaders.items():  # the dataset's further test sets: accuracy only
                correct = total = 0
                for logits, labels in self._predict(extra_loader, name):
                    correct += int((logits.argmax(dim=1) == labels).sum())
                    total += int(labels.numel())
                extra[f"{name}_accuracy"] = 100.0 * correct / max(total, 1)
        results = self.evaluator.evaluate(extra=extra) if extra else self.evaluator.evaluate()
        for k, v in results.items():
            self.writer_add_scalar(f"{split}/{k}", v, self.epoch)
        self.last_results = results
        return list(results.values())[0]
