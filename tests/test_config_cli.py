import subprocess
import sys
from pathlib import Path

import pytest

from dapt.cli import build_parser, setup_cfg
from dapt.config import ConfigError, get_cfg_default, merge_from_file, merge_from_list

REPO = Path(__file__).resolve().parents[1]

MAPLE_STYLE_YAML = """
DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 4
  TEST:
    BATCH_SIZE: 100
  NUM_WORKERS: 8
INPUT:
  SIZE: (224, 224)
  INTERPOLATION: "bicubic"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["random_resized_crop", "random_flip", "normalize"]
OPTIM:
  NAME: "sgd"
  LR: 0.0035
  MAX_EPOCH: 5
  LR_SCHEDULER: "cosine"
  WARMUP_EPOCH: 1
  WARMUP_TYPE: "constant"
  WARMUP_CONS_LR: 1e-5
TRAIN:
  PRINT_FREQ: 20
MODEL:
  BACKBONE:
    NAME: "ViT-B/16"
TRAINER:
  COOP:
    N_CTX: 16
    CSC: False
    CTX_INIT: ""
    PREC: "fp16"
    CLASS_TOKEN_POSITION: "end"
"""


def test_upstream_style_yaml_merges(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text(MAPLE_STYLE_YAML)
    cfg = get_cfg_default()
    merge_from_file(cfg, str(f))
    assert cfg.INPUT.SIZE == (224, 224) and cfg.OPTIM.LR == 0.0035 and cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 4
    assert cfg.TRAINER.COOP.PREC == "fp16"


def test_unknown_key_names_closest(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("TRAINER:\n  COOP:\n    NCTX: 4\n")
    cfg = get_cfg_default()
    with pytest.raises(ConfigError) as e:
        merge_from_file(cfg, str(f))
    msg = str(e.value)
    assert "TRAINER.COOP.NCTX" in msg and "TRAINER.COOP.N_CTX" in msg and str(f) in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"OPTIM\.LR_SCHEDULER"):
        merge_from_list(get_cfg_default(), ["OPTIM.LR_SCHEDULE", "cosine"])


def test_cli_flags_map_to_config(tmp_path):
    args = build_parser().parse_args([
        "--root", "/data", "--transforms", "random_flip", "normalize", "--output-dir", str(tmp_path), "--seed", "3",
        "--trainer", "CoOp", "--backbone", "RN50", "DATASET.NUM_SHOTS", "16",
        "OPTIM.MAX_EPOCH", "2",
    ])
    cfg = setup_cfg(args)
    assert cfg.DATASET.ROOT == "/data" and cfg.OUTPUT_DIR == str(tmp_path) and cfg.SEED == 3
    assert cfg.TRAINER.NAME == "CoOp" and cfg.MODEL.BACKBONE.NAME == "RN50"
    assert tuple(cfg.INPUT.TRANSFORMS) == ("random_flip", "normalize")
    assert cfg.DATASET.NUM_SHOTS == 16 and cfg.OPTIM.MAX_EPOCH == 2


def test_no_prefix_matching():
    # the official DAPT script's "--mode" was taken as "--model-dir" by prefix matching; here it is
    # its own flag, and abbreviations of long flags are refused
    args = build_parser().parse_args(["--mode", "dapt-g"])
    assert args.dapt_mode == "dapt-g" and args.model_dir == ""
    for abbrev in (["--model", "x"], ["--eval", "x"], ["--config", "x"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(abbrev)


def test_cli_unknown_key_exit_code(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "train.py"), "--output-dir", str(tmp_path), "TRAINER.COOP.NCTX", "4"],
                       capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "TRAINER.COOP.N_CTX" in r.stderr


def test_saved_config_reloads_identically(tmp_path):
    from dapt.cli import save_config

    args = build_parser().parse_args(["--trainer", "CoOp", "OPTIM.LR", "0.01", "TRAINER.COOP.N_CTX", "8"])
    cfg = setup_cfg(args)
    path = save_config(cfg, str(tmp_path))
    again = get_cfg_default()
    merge_from_file(again, path)
    assert again.dump() == cfg.dump()
