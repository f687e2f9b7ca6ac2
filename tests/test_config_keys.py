"""Every config key does what its comment says: each key is read somewhere in dapt/ besides its
definition, or it is a declared compatibility key (commented so, and warned about when set)."""
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dapt.config import CN, all_keys, get_cfg_default
from dapt.config.compat import COMPAT_KEYS, warn_ignored_keys

REPO = Path(__file__).resolve().parents[1]
DEFINITION = re.compile(r"^\s*(_C|cfg)\.[A-Z0-9_.]+ = ")


def library_source_without_definitions() -> str:
    lines = []
    for p in (REPO / "dapt").rglob("*.py"):
        if p.name == "compat.py":
            continue  # listing a key there is not reading it
        lines += [ln for ln in p.read_text().splitlines() if not DEFINITION.match(ln)]
    return "\n".join(lines)


def value(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def leaf_keys(cfg):
    return [k for k in all_keys(cfg) if not isinstance(value(cfg, k), CN)]


def test_no_key_is_left_unread():
    cfg = get_cfg_default()
    text = library_source_without_definitions()
    # a read names the key's last component as an attribute or a string (``d.LOSS.W_CLS``, ``"PREC"``)
    unread = [k for k in leaf_keys(cfg) if not re.search(r"[.\"']" + re.escape(k.split(".")[-1]) + r"\b", text)]
    assert set(unread) <= set(COMPAT_KEYS), f"config keys nothing reads: {sorted(set(unread) - set(COMPAT_KEYS))}"
    assert len(unread) >= 15  # the check sees the Dassl-only keys, so it would see a new unread one


def test_compat_keys_are_commented_and_exist():
    cfg = get_cfg_default()
    keys = set(all_keys(cfg))
    defaults = (REPO / "dapt" / "config" / "defaults.py").read_text()
    for k in COMPAT_KEYS:
        assert k in keys, k
        line = re.search(r"^_C\." + re.escape(k) + r" = .*$", defaults, re.M).group(0)
        assert "accepted for compatibility, ignored" in line, line


def test_compat_key_set_to_a_non_default_value_warns(caplog):
    cfg = get_cfg_default()
    assert warn_ignored_keys(cfg) == []
    cfg.DATASET.NUM_LABELED = 5
    cfg.OPTIM.STAGED_LR = True
    with caplog.at_level(logging.WARNING, logger="dapt.config.compat"):
        assert warn_ignored_keys(cfg) == ["DATASET.NUM_LABELED", "OPTIM.STAGED_LR"]
    assert "DATASET.NUM_LABELED = 5 is accepted for compatibility and ignored" in caplog.text


def test_compute_cmat_saves_the_row_normalised_confusion_matrix(tmp_path):
    from dapt.engine.evaluator import build_evaluator

    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST.COMPUTE_CMAT = True
    ev = build_evaluator(cfg, {0: "a", 1: "b", 2: "c"})
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 0, 1, 1, 0])
    ev.process(torch.nn.functional.one_hot(pred, 3).float(), y)
    ev.evaluate()
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=True)
    expected = np.array([[2 / 3, 1 / 3, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(cmat.numpy(), expected)
    cfg.TEST.COMPUTE_CMAT = False
    cfg.OUTPUT_DIR = str(tmp_path / "off")
    ev = build_evaluator(cfg, {0: "a", 1: "b", 2: "c"})
    ev.process(torch.eye(3), torch.arange(3))
    ev.evaluate()
    assert not (tmp_path / "off" / "cmat.pt").exists()
    cfg.TEST.COMPUTE_CMAT = True
    with pytest.raises(ValueError, match="COMPUTE_CMAT"):
        build_evaluator(cfg, {0: "a"}, multi_label=True)


def test_triplet_image_space_pixel_masks_raw_pixels():
    from dapt.decouple.integration import Decoupler
    from dapt.decouple.triplet import make_triplet

    cfg = get_cfg_default()
    assert Decoupler(cfg).fill == "normalized_zero"
    cfg.DAPT.TRIPLET.IMAGE_SPACE = "pixel"
    dec = Decoupler(cfg)
    assert dec.fill == "pixel_black"
    # masking raw pixels, then normalising, is what the pixel_black fill computes
    mean, std = torch.tensor(cfg.INPUT.PIXEL_MEAN).view(1, 3, 1, 1), torch.tensor(cfg.INPUT.PIXEL_STD).view(1, 3, 1, 1)
    raw = torch.rand(2, 3, 8, 8)
    m = (torch.rand(2, 1, 8, 8) > 0.5).float()
    trip = make_triplet((raw - mean) / std, m, None, dec.fill, cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD)
    torch.testing.assert_close(trip.fg, (m * raw - mean) / std)
    torch.testing.assert_close(trip.bg, ((1 - m) * raw - mean) / std)
    cfg.DAPT.TRIPLET.IMAGE_SPACE = "raw"
    with pytest.raises(ValueError, match="IMAGE_SPACE 'raw'"):
        Decoupler(cfg)
