import pytest
import torch

from dapt.config import get_cfg_default
from dapt.engine.build import build_trainer
from dapt.engine.checkpoint import latest_checkpoint
from engine_fixtures import make_dm


def cfg_for(tiny_name, out, **over):
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "CoOp"
    cfg.MODEL.BACKBONE.NAME = tiny_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.OUTPUT_DIR = str(out)
    cfg.SEED = 1
    cfg.VERBOSE = False
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.05
    cfg.OPTIM.MAX_EPOCH = 3
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = "constant"
    cfg.TRAINER.COOP.N_CTX = 4
    cfg.TRAIN.CHECKPOINT_FREQ = 1
    for k, v in over.items():
        node = cfg
        *path, leaf = k.split(".")
        for p in path:
            node = getattr(node, p)
        setattr(node, leaf, v)
    return cfg


def train(cfg):
    from dapt.utils.misc import set_random_seed

    set_random_seed(cfg.SEED)
    t = build_trainer(cfg, dm=make_dm())
    t.train()
    return t


def test_resume_is_bit_identical(tiny_name, tmp_path):
    full = train(cfg_for(tiny_name, tmp_path / "full"))
    ref = full.get_model_state()
    cfg = cfg_for(tiny_name, tmp_path / "resumed")
    train(cfg)
    ckdir = tmp_path / "resumed" / "prompt_learner"
    (ckdir / "model.pth.tar-3").unlink()  # as if the run died during the last epoch
    assert latest_checkpoint(ckdir).name == "model.pth.tar-2"
    resumed = train(cfg)
    assert resumed.start_epoch == 2
    got = resumed.get_model_state()
    assert list(got) == ["ctx"]
    assert torch.equal(got["ctx"], ref["ctx"])
    # and resuming did change the weights relative to the epoch-2 checkpoint
    ep2 = torch.load(ckdir / "model.pth.tar-2", weights_only=True)["state_dict"]["ctx"]
    assert not torch.equal(ep2, ref["ctx"])


def test_eval_only_reproduces_accuracy_and_best_val(tiny_name, tmp_path):
    cfg = cfg_for(tiny_name, tmp_path / "run", **{"TEST.FINAL_MODEL": "best_val"})
    t = train(cfg)
    acc = t.last_results["accuracy"]
    assert (tmp_path / "run" / "prompt_learner" / "model-best.pth.tar").is_file()
    from dapt.utils.misc import set_random_seed

    set_random_seed(1)  # the same random-weight CLIP as the trained run
    e = build_trainer(cfg_for(tiny_name, tmp_path / "eval"), dm=make_dm())
    e.load_model(str(tmp_path / "run"))
    assert e.test() == pytest.approx(acc)
    e.load_model(str(tmp_path / "run"), epoch=3)
    last = torch.load(tmp_path / "run" / "prompt_learner" / "model.pth.tar-3", weights_only=True)["state_dict"]["ctx"]
    assert torch.equal(e.get_model_state()["ctx"], last)


def test_training_improves_over_init(tiny_name, tmp_path):
    cfg = cfg_for(tiny_name, tmp_path / "run", **{"OPTIM.MAX_EPOCH": 6, "TRAIN.CHECKPOINT_FREQ": 0})
    from dapt.utils.misc import set_random_seed

    set_random_seed(1)
    t = build_trainer(cfg, dm=make_dm())
    before = t.test()
    t.train()
    after = t.last_results["accuracy"]
    assert after > before + 20  # 4 colour classes: random-weight CLIP + learned context separates them
    # checkpoint files follow Dassl's naming and hold only the learnable context
    files = sorted(p.name for p in (tmp_path / "run" / "prompt_learner").iterdir())
    assert files == ["checkpoint", "model.pth.tar-6"]
    assert (tmp_path / "run" / "tensorboard").is_dir()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from dapt.engine import checkpoint as ck

    target = tmp_path / "model.pth.tar-1"
    ck.atomic_torch_save({"a": torch.ones(2)}, target)

    def boom(obj, f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck.torch, "save", boom)
    with pytest.raises(RuntimeError):
        ck.atomic_torch_save({"a": torch.zeros(2)}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth.tar-1"]  # no temp left behind
