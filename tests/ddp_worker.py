"""Entry point of the processes spawned by test_distributed.py (must be importable)."""
import os
import sys

import torch


def run(rank, world, port, out_dir, tiny_cfg_dir, batch):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "HF_HUB_OFFLINE": "1"})
    sys.path.insert(0, os.path.dirname(__file__))
    torch.set_num_threads(1)
    from conftest import register_tiny
    from engine_fixtures import make_dm
    from test_engine import cfg_for

    from dapt.engine.build import build_trainer
    from dapt.utils.misc import set_random_seed

    name = register_tiny(tiny_cfg_dir)
    cfg = cfg_for(name, out_dir, **{"OPTIM.MAX_EPOCH": 2, "TRAIN.CHECKPOINT_FREQ": 0, "USE_CUDA": False})
    set_random_seed(cfg.SEED)  # the same random-weight CLIP in every process (pretrained weights in real runs)
    dm = make_dm(batch_size=batch, sequential=True, noise=0.0)
    trainer = build_trainer(cfg, dm=dm)
    trainer.train()
    torch.save(trainer.get_model_state(), os.path.join(out_dir, f"rank{rank}.pt"))
    import torch.distributed as dist

    dist.destroy_process_group()
