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


def average(rank, world, port, out_dir):
    """average_gradients on a few tensors of different shapes and dtypes; counts the collectives."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    import torch.distributed as dist

    from dapt.engine import dist as ddist

    ddist.init_distributed(use_cuda=False)
    shapes = [(3,), (2, 5), (4, 1, 2), (7,)]
    params = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64 if i == 3 else torch.float32))
              for i, s in enumerate(shapes)]
    gen = torch.Generator().manual_seed(100 + rank)
    for i, p in enumerate(params):
        if i != 1:  # one parameter without a gradient (frozen this step)
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
    calls = []
    real = dist.all_reduce
    dist.all_reduce = lambda t, *a, **k: (calls.append(t.numel()), real(t, *a, **k))[1]
    try:
        ddist.average_gradients(params)
    finally:
        dist.all_reduce = real
    torch.save({"grads": [p.grad for p in params], "calls": calls}, os.path.join(out_dir, f"avg{rank}.pt"))
    dist.destroy_process_group()
