"""DAPT's terms against hand computations on small tensors."""
import math

import pytest
import torch
import torch.nn.functional as F

from dapt.config import get_cfg_default
from dapt.decouple.background import PAPER25, load_background_classes, split_background
from dapt.decouple.losses import (DAPTLoss, background_loss, background_pseudo_labels, foreground_loss,
                                  triplet_loss)


def unit(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_triplet_l1_both_sides_of_the_hinge():
    a = unit([1.0, 0.0], [1.0, 0.0]).requires_grad_(True)
    f = unit([0.6, 0.8], [1.0, 0.0])
    b = unit([0.0, -1.0], [-1.0, 0.0])
    # sample 0: |a-f|_1 = 0.4 + 0.8 = 1.2, |a-b|_1 = 2 -> 1.2 - 2 + 1 = 0.2 (active)
    # sample 1: |a-f|_1 = 0, |a-b|_1 = 2 -> 0 - 2 + 1 < 0 -> 0 (inactive)
    loss = triplet_loss(a, f, b, p=1, margin=1.0)
    assert loss.item() == pytest.approx(0.1, abs=1e-6)
    loss.backward()
    assert torch.count_nonzero(a.grad[1]) == 0  # the inactive sample gets no gradient
    assert torch.count_nonzero(a.grad[0]) > 0
    # the paper's margin 5 keeps both active: (4.2 + 3) / 2
    assert triplet_loss(a, f, b, p=1, margin=5.0).item() == pytest.approx(3.6, abs=1e-6)


def test_triplet_normalises_features():
    a, f, b = unit([2.0, 0.0]), unit([0.3, 0.4]), unit([0.0, 7.0])
    assert triplet_loss(a, f, b, p=1, margin=5.0).item() == pytest.approx(1.2 - 2 + 5, abs=1e-6)


def test_triplet_official_equals_torch_triplet_margin_loss():
    torch.manual_seed(0)
    a, f, b = (F.normalize(torch.randn(5, 8), dim=-1) for _ in range(3))
    ours = triplet_loss(a, f, b, p=2, margin=1.5, eps=1e-6)
    ref = F.triplet_margin_loss(a, f, b, margin=1.5)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-6)


def test_triplet_halves_and_detach():
    a = unit([1.0, 0.0]).requires_grad_(True)
    f = unit([0.6, 0.8]).requires_grad_(True)
    b = unit([0.0, 1.0]).requires_grad_(True)
    assert triplet_loss(a, f, b, terms="pos").item() == pytest.approx(1.2, abs=1e-6)
    assert triplet_loss(a, f, b, terms="neg", margin=5.0).item() == pytest.approx(3.0, abs=1e-6)
    assert triplet_loss(a, f, b, terms="neg", margin=1.0).item() == 0.0
    triplet_loss(a, f, b, detach_pos_neg=True).backward()
    assert f.grad is None and b.grad is None and a.grad is not None


def test_foreground_loss_hand():
    z = unit([1.0, 0.0], [0.0, 2.0])
    t = unit([1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
    y = torch.tensor([0, 2])
    s = torch.tensor(10.0)
    # cosines: row0 (1, 0, .7071), row1 (0, 1, .7071)
    c = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(10) / (math.exp(10) + 1 + math.exp(10 * c)))
    l1 = -math.log(math.exp(10 * c) / (1 + math.exp(10) + math.exp(10 * c)))
    assert foreground_loss(s, z, t, y).item() == pytest.approx((l0 + l1) / 2, rel=1e-5)


def test_foreground_loss_multilabel_soft_margin():
    z, t = unit([1.0, 0.0]), unit([1.0, 0.0], [0.0, 1.0])
    y = torch.tensor([[1.0, 1.0]])
    x = [2.0, 0.0]  # scale 2 * cosines
    ref = sum(math.log(1 + math.exp(-v)) for v in x) / 2
    assert foreground_loss(torch.tensor(2.0), z, t, y, multi_label=True).item() == pytest.approx(ref, rel=1e-5)


def test_pseudo_labels_and_background_loss_hand():
    z0 = unit([1.0, 0.1], [0.2, 1.0], [-1.0, -0.9])  # frozen features of I_b
    u0 = unit([1.0, 0.0], [0.0, 1.0], [-1.0, -1.0])  # frozen background texts
    y = background_pseudo_labels(z0, u0)
    assert y.tolist() == [0, 1, 2]
    zb = unit([0.0, 1.0], [0.0, 1.0], [0.0, 1.0])  # prompted I_b features
    ub = unit([1.0, 0.0], [0.0, 1.0], [-1.0, 0.0])
    s = 3.0
    # logits s * (0, 1, 0) for every row
    lse = math.log(2 + math.exp(3))
    ref = ((lse - 0) + (lse - 3) + (lse - 0)) / 3
    assert background_loss(torch.tensor(s), zb, ub, y).item() == pytest.approx(ref, rel=1e-6)


def test_schedule_and_switches():
    cfg = get_cfg_default()
    loss = DAPTLoss(cfg.DAPT.LOSS, cfg.DAPT.TRIPLET)
    assert loss.active(0) == {"fg", "bg", "triplet"} == loss.active(9)
    assert loss.active(0, image_learnable=False) == {"fg", "bg"}
    cfg.DAPT.LOSS.SCHEDULE = "epoch_switch"
    cfg.DAPT.LOSS.USE_B = False
    loss = DAPTLoss(cfg.DAPT.LOSS, cfg.DAPT.TRIPLET)
    assert loss.active(6) == {"triplet"} and loss.active(7) == {"fg"}


def test_weighted_total_equals_eq7():
    cfg = get_cfg_default()
    loss = DAPTLoss(cfg.DAPT.LOSS, cfg.DAPT.TRIPLET)
    torch.manual_seed(1)
    zi, zf, zb = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    t, tb = torch.randn(3, 6), torch.randn(5, 6)
    y, yb = torch.tensor([0, 1, 2, 0]), torch.tensor([4, 0, 1, 2])
    s = torch.tensor(100.0)
    raw, logits = loss(s, zi, zf, zb, t, y, tb, yb)
    total = sum(loss.weighted(raw).values())
    ref = (F.cross_entropy(logits, y) + 0.6 * triplet_loss(zi, zf, zb) + 0.4 * foreground_loss(s, zf, t, y)
           + 0.1 * background_loss(s, zb, tb, yb))
    assert total.item() == pytest.approx(ref.item(), rel=1e-6)


def test_background_vocabularies(tmp_path):
    cfg = get_cfg_default()
    assert PAPER25[:3] == ["ground", "land", "grass"] and len(PAPER25) == 25
    assert split_background(cfg.DAPT.BG) == ([], PAPER25)
    cfg.DAPT.BG.NUM = 5
    assert split_background(cfg.DAPT.BG)[1] == PAPER25[:5]
    cfg.DAPT.BG.NUM = 0
    cfg.DAPT.BG.CLASSES = "official32"
    cfg.DAPT.BG.FG_EXTRA = 7
    extra, lb = split_background(cfg.DAPT.BG)
    assert extra == PAPER25[:7] and lb[:18] == PAPER25[7:] and lb[-1] == "dishes" and len(lb) == 25
    f = tmp_path / "bg.txt"
    f.write_text("# mine\nsand\nsnow\n")
    assert load_background_classes(str(f)) == ["sand", "snow"]
    assert load_background_classes("sand, snow") == ["sand", "snow"]
    with pytest.raises(ValueError, match="DAPT.BG.CLASSES"):
        load_background_classes("nothing_like_this")
