"""Two CPU processes (gloo) train like one process with the union of their batches."""
import socket

import torch
import torch.multiprocessing as mp

import ddp_worker
from conftest import TINY_NAME, register_tiny
from engine_fixtures import make_dm
from test_engine import cfg_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_with_double_batch(tmp_path):
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    out = tmp_path / "ddp"
    mp.spawn(ddp_worker.run, args=(2, free_port(), str(out), str(cfg_dir), 4), nprocs=2, join=True)
    r0 = torch.load(out / "rank0.pt", weights_only=True)["ctx"]
    r1 = torch.load(out / "rank1.pt", weights_only=True)["ctx"]
    assert torch.equal(r0, r1)
    assert (out / "prompt_learner" / "model.pth.tar-2").is_file()  # written by rank 0
    # reference: one process, batch 8 = rank 0's 4 + rank 1's 4 (sequential shards interleave)
    from dapt.engine.build import build_trainer
    from dapt.utils.misc import set_random_seed

    register_tiny(cfg_dir)
    cfg = cfg_for(TINY_NAME, tmp_path / "single", **{"OPTIM.MAX_EPOCH": 2, "TRAIN.CHECKPOINT_FREQ": 0})
    set_random_seed(cfg.SEED)
    t = build_trainer(cfg, dm=make_dm(batch_size=8, sequential=True, noise=0.0))
    t.train()
    ref = t.get_model_state()["ctx"]
    # fp32 round-off only: the union batch sums its 8 losses in another order than 4 + 4 (measured
    # 2.3e-6 after 2 epochs, the same with per-tensor and with flattened all-reduce, OMP_NUM_THREADS=1)
    assert torch.allclose(r0, ref, atol=5e-6), (r0 - ref).abs().max()


def test_flat_average_equals_mean_per_tensor_with_one_collective_per_dtype(tmp_path):
    mp.spawn(ddp_worker.average, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    res = [torch.load(tmp_path / f"avg{r}.pt", weights_only=True) for r in range(2)]
    # each rank's own gradients, drawn as in the worker: the average is their mean, tensor by tensor
    shapes = [(3,), (2, 5), (4, 1, 2), (7,)]
    own = []
    for r in range(2):
        gen = torch.Generator().manual_seed(100 + r)
        own.append({i: torch.randn(s, generator=gen, dtype=torch.float64 if i == 3 else torch.float32)
                    for i, s in enumerate(shapes) if i != 1})
    for i in (0, 2, 3):
        mean = (own[0][i] + own[1][i]) / 2
        for r in range(2):
            assert res[r]["grads"][i].dtype == mean.dtype
            assert torch.allclose(res[r]["grads"][i], mean, atol=1e-7, rtol=0)
    assert res[0]["grads"][1] is None
    # one flat all-reduce per dtype: float32 (3 + 8 elements) and float64 (7)
    assert sorted(res[0]["calls"]) == [7, 11]
