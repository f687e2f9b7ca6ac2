"""DAPT-G under torchrun: each of two CPU processes (gloo) computes the Grad-CAM masks of its share of
the batches, the packed bits are all-gathered, and every process ends with the masks of a
single-process refresh (bit for bit, under the batch-max normalisation that couples a batch's images)."""
import numpy as np
import pytest
import torch.multiprocessing as mp

import ddp_gradcam_worker
from conftest import register_tiny
from dapt.decouple.gradcam import shard_batches
from test_distributed import free_port


def test_shard_batches_deal_the_single_process_batches():
    shards = shard_batches(9, 2, 2)
    assert shards == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7]]]
    assert shard_batches(3, 4, 3) == [[[0, 1, 2]], [], []]  # more processes than batches


@pytest.mark.slow
def test_sharded_refresh_gathers_the_single_process_masks(tmp_path):
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    mp.spawn(ddp_gradcam_worker.run, args=(2, free_port(), str(cfg_dir), str(tmp_path)), nprocs=2, join=True)
    register_tiny(cfg_dir)
    bits, filled, batches, fg = ddp_gradcam_worker.refresh_bank(str(cfg_dir), str(tmp_path / "single"),
                                                                str(tmp_path / "data_single"))
    assert filled.all() and bits.any() and not (bits == 255).all()  # real, non-trivial masks
    assert [len(b) for b in batches] == [2, 2, 2, 2, 1]
    ranks = [np.load(tmp_path / f"bank{r}.npz") for r in range(2)]
    # each rank computed only its own batches: 0-1, 4-5, 8 and 2-3, 6-7
    assert ranks[0]["batches"].tolist() == [0, 1, 4, 5, 8]
    assert ranks[1]["batches"].tolist() == [2, 3, 6, 7]
    for r in ranks:
        assert r["filled"].all()
        assert np.array_equal(r["bits"], bits), np.nonzero((r["bits"] != bits).any(axis=1))
        assert float(r["fg"]) == pytest.approx(fg)
