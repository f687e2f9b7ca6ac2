"""Data-efficient setting, model side: score the training set with the run's own model (after the
optional OPTIM_SELECTION pre-training), select with ``dapt.data.selection.select`` and hand the
selection to the data manager. Pure scoring functions live in ``dapt.data.selection``."""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dapt.data.selection import SELECTION_FILE, check_method, select

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ model side
@torch.no_grad()
def score_outputs(method, loader, device, autocast=contextlib.nullcontext) -> Dict[str, torch.Tensor]:
    """Class logits (N, C), normalised image features (N, E) and labels of every sample of ``loader``
    (a sequential loader), from a ``PromptMethod`` in eval mode; ``autocast``: a context factory."""
    was_training = method.training
    method.eval()
    logits, embeds, labels = [], [], []
    try:
        with autocast():
            text = method.encode_text()
        for batch in tqdm(loader, desc="selection scores", leave=False):
            images = batch["img"].to(device)
            with autocast():
                feats = method.encode_image(images)
                lg = method.logits(feats, text)
            logits.append(lg.float().cpu())
            embeds.append(F.normalize(feats.float(), dim=-1).cpu())
            labels.append(batch["label"].cpu())
    finally:
        method.train(was_training)
    return {"logits": torch.cat(logits), "embeddings": torch.cat(embeds), "labels": torch.cat(labels)}


def _pretrain(trainer, epochs: int) -> None:
    """``epochs`` epochs of the method's own loss on the full training set with OPTIM_SELECTION."""
    from dapt.engine.optim import build_lr_scheduler, build_optimizer

    cfg = trainer.cfg
    params = list(trainer.trainable_parameters())
    optim = build_optimizer(params, cfg.OPTIM_SELECTION)
    sched = build_lr_scheduler(optim, cfg.OPTIM_SELECTION)
    scaler = torch.amp.GradScaler("cuda") if trainer.scaler is not None else None
    for epoch in range(epochs):
        trainer.model.train()
        total, n = 0.0, 0
        for batch in tqdm(trainer.dm.train_loader_x, desc=f"selection pre-training {epoch + 1}/{epochs}", leave=False):
            images, labels = trainer.parse_batch(batch)
            with trainer.autocast():
                losses, _ = trainer.model.losses(images, labels)
            loss = sum(losses.values())
            optim.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optim)
                scaler.update()
            else:
                loss.backward()
                optim.step()
            total, n = total + float(loss.detach()), n + 1
        sched.step()
        logger.info("selection pre-training epoch %d/%d: loss %.4f", epoch + 1, epochs, total / max(n, 1))


def _matches(saved: dict, method: str, ratio: float, seed: int, impaths: Sequence[str]) -> bool:
    return (saved.get("method") == method and saved.get("ratio") == ratio and saved.get("seed") == seed
            and saved.get("num_train") == len(impaths)
            and len(saved.get("indices", [])) == len(saved.get("impaths", []))
            and all(0 <= i < len(impaths) and impaths[i] == p
                    for i, p in zip(saved.get("indices", []), saved.get("impaths", []))))


def select_training_data(trainer) -> Optional[np.ndarray]:
    """Sub-select the trainer's training set by DATASET.SELECTION_METHOD / RATIO (no-op at ratio 1).

    Called once before training. Scores come from ``trainer.model`` (a PromptMethod), after
    OPTIM_SELECTION.MAX_EPOCH epochs of pre-training whose effect is undone afterwards. Writes (rank 0)
    or reuses ``<OUTPUT_DIR>/selection.json`` and replaces the data manager's training list."""
    from dapt.utils.atomic import atomic_write_text

    cfg = trainer.cfg
    method = check_method(cfg.DATASET.SELECTION_METHOD)
    ratio = float(cfg.DATASET.SELECTION_RATIO)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"DATASET.SELECTION_RATIO {ratio} must be in (0, 1]")
    if ratio >= 1.0:
        return None
    dm = trainer.dm
    if getattr(dm.dataset, "multi_label", False):
        raise ValueError("DATASET.SELECTION_RATIO < 1 needs single-label data (the selection is class-balanced); "
                         "set it to 1.0 for multi-label datasets")
    train_x = list(dm.dataset.train_x)
    impaths = [d.impath for d in train_x]
    seed = max(int(cfg.SEED), 0)
    path = Path(cfg.OUTPUT_DIR) / SELECTION_FILE
    indices = None
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
        if _matches(saved, method, ratio, seed, impaths):
            indices = np.asarray(saved["indices"], dtype=np.int64)
            logger.info("Reusing the data selection in %s", path)
    if indices is None:
        labels = [int(d.label) for d in train_x]
        if method == "Uniform":
            indices = select(method, labels, ratio, seed)
        else:
            indices = _model_selection(trainer, method, labels, ratio, seed, train_x)
        if trainer.is_main:
            atomic_write_text(path, json.dumps({
                "method": method, "ratio": ratio, "seed": seed, "num_train": len(train_x),
                "indices": indices.tolist(), "impaths": [impaths[i] for i in indices]}, indent=1) + "\n")
    dm.select_train(indices)
    logger.info("Data selection %s: %d of %d training images (%.1f%%), listed in %s", method, len(indices),
                len(train_x), 100.0 * len(indices) / max(len(train_x), 1), path)
    return indices


def _model_selection(trainer, method, labels, ratio, seed, train_x) -> np.ndarray:
    from dapt.data.data_manager import build_data_loader

    cfg = trainer.cfg
    epochs = int(cfg.OPTIM_SELECTION.MAX_EPOCH)
    saved_state = None
    if epochs > 0:
        saved_state = {k: v.clone() for k, v in trainer.get_model_state().items()}
        _pretrain(trainer, epochs)
    try:
        bs = int(cfg.DATASET.SELECTION_BATCH_SIZE)
        loader = build_data_loader(cfg, "SequentialSampler", train_x, bs, trainer.dm.tfm_test, is_train=False)
        out = score_outputs(trainer.model, loader, trainer.device, trainer.autocast)
        val = None
        if method == "Glister" and trainer.dm.dataset.val:
            vloader = build_data_loader(cfg, "SequentialSampler", trainer.dm.dataset.val, bs, trainer.dm.tfm_test,
                                        is_train=False)
            val = score_outputs(trainer.model, vloader, trainer.device, trainer.autocast)
            val["labels"] = val["labels"].numpy()
    finally:
        if saved_state is not None:
            trainer.load_model_state(saved_state)
    return select(method, labels, ratio, seed, out["logits"], out["embeddings"], val=val,
                  eta=float(cfg.OPTIM_SELECTION.LR))
