"""Entry point of the processes spawned by test_gradcam_sharded.py (must be importable)."""
import os
import sys

from pathlib import Path

import numpy as np
import torch


def refresh_bank(tiny_cfg_dir, out_dir, data_dir):
    """Build a MaPLe + DAPT-G trainer on the stand-in data and run one epoch's mask refresh; -> (bits, filled,
    this rank's loader batches, the logged foreground fraction)."""
    sys.path.insert(0, os.path.dirname(__file__))
    torch.set_num_threads(1)
    from conftest import register_tiny
    from test_dapt_train import make_cfg, stand_in_dm

    from dapt.decouple.integration import build_training_data
    from dapt.engine.build import build_trainer
    from dapt.utils.misc import set_random_seed

    name = register_tiny(tiny_cfg_dir)
    cfg = make_cfg(name, out_dir, "gradcam")
    cfg.TRAINER.NAME = "MaPLe"
    cfg.USE_CUDA = False
    cfg.SEED = 1  # the same random-weight CLIP in every process
    cfg.DAPT.CAM.BATCH_SIZE = 2  # 9 images: 5 batches, dealt 3 / 2 to two ranks
    cfg.DAPT.CAM.NORM = "batch_max"  # the official normalisation: a mask depends on its batch's other images
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg, dm=stand_in_dm(Path(data_dir)))
    hook = trainer.hooks[-1]
    build_training_data(trainer, trainer.dapt, hook)
    trainer.epoch = 0
    hook.before_epoch()
    batches = [b["index"].tolist() for b in hook.cam_loader]
    return hook.bank.bits.copy(), hook.bank.filled.copy(), batches, hook.bank.foreground_fraction()


def run(rank, world, port, tiny_cfg_dir, root):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "HF_HUB_OFFLINE": "1"})
    bits, filled, batches, fg = refresh_bank(tiny_cfg_dir, os.path.join(root, f"out{rank}"),
                                             os.path.join(root, f"data{rank}"))
    np.savez(os.path.join(root, f"bank{rank}.npz"), bits=bits, filled=filled, fg=fg,
             batches=np.array([i for b in batches for i in b]))
    import torch.distributed as dist

    dist.destroy_process_group()
