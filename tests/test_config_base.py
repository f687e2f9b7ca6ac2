"""``_BASE_`` inheritance of our YAML files; the shipped DAPT configs through it."""
from pathlib import Path

import pytest

from dapt.config import ConfigError, get_cfg_default, merge_from_file

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_bases_merge_in_order_then_the_file(tmp_path):
    write(tmp_path / "common" / "a.yaml", "OPTIM:\n  LR: 0.1\n  MAX_EPOCH: 3\nTRAINER:\n  COOP:\n    N_CTX: 8\n")
    write(tmp_path / "common" / "b.yaml", "OPTIM:\n  MAX_EPOCH: 7\n")
    child = write(tmp_path / "x" / "child.yaml", "_BASE_: [../common/a.yaml, ../common/b.yaml]\nOPTIM:\n  LR: 0.5\n")
    cfg = get_cfg_default()
    merge_from_file(cfg, child)
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.TRAINER.COOP.N_CTX) == (0.5, 7, 8)
    assert "_BASE_" not in cfg
    # a chain, through the yacs method name as researchers call it
    grand = write(tmp_path / "x" / "grand.yaml", "_BASE_: child.yaml\nTRAINER:\n  COOP:\n    N_CTX: 2\n")
    cfg = get_cfg_default()
    cfg.merge_from_file(grand)
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.TRAINER.COOP.N_CTX) == (0.5, 7, 2)


def test_base_errors_name_the_file(tmp_path):
    missing = write(tmp_path / "m.yaml", "_BASE_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere.yaml does not exist \(the _BASE_ of"):
        merge_from_file(get_cfg_default(), missing)
    loop = write(tmp_path / "l1.yaml", "_BASE_: l2.yaml\n")
    write(tmp_path / "l2.yaml", "_BASE_: l1.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        merge_from_file(get_cfg_default(), loop)
    bad_key = write(tmp_path / "k.yaml", "_BASE_: l0.yaml\nOPTIM:\n  LRR: 1\n")
    write(tmp_path / "l0.yaml", "OPTIM:\n  LR: 1.0\n")
    with pytest.raises(ConfigError, match=r"k.yaml: unknown config key 'OPTIM.LRR'"):
        merge_from_file(get_cfg_default(), bad_key)


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml")
                                        if "sweeps" not in p.parts))
def test_every_shipped_config_loads(path):
    merge_from_file(get_cfg_default(), str(REPO / path))


def test_dapt_configs_through_their_bases():
    cfg = get_cfg_default()
    merge_from_file(cfg, str(REPO / "configs/trainers/MaPLe/dapt_vit_b16_cross_datasets.yaml"))
    # paper setting III weights and its own optimiser; the MaPLe node and the shared DAPT node
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == (0.0026, 2)
    assert (cfg.DAPT.LOSS.W_V, cfg.DAPT.LOSS.W_F, cfg.DAPT.LOSS.W_B) == (0.4, 0.4, 0.5)
    assert cfg.DAPT.ENABLED and cfg.TRAINER.MAPLE.PROMPT_DEPTH == 9 and cfg.INPUT.SIZE == (224, 224)
    cfg = get_cfg_default()
    merge_from_file(cfg, str(REPO / "configs/trainers/MaPLe/dapt_official_vit_b16_base.yaml"))
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.MAX_EPOCH, cfg.TEST.FINAL_MODEL) == (1, 5, "best_val")
    assert (cfg.DAPT.LOSS.SCHEDULE, cfg.DAPT.TRIPLET.P, cfg.DAPT.BG.FG_EXTRA) == ("epoch_switch", 2, 7)
