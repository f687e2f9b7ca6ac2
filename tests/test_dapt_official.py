"""The Decoupler step: the official-variant config reproduces the official loss formula on a fixed
batch; the paper config computes Eq. 7 with frozen-CLIP pseudo-labels."""
import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dapt.config import get_cfg_default, merge_from_file
from dapt.decouple.background import VOCABULARIES
from dapt.decouple.integration import Decoupler

REPO = Path(__file__).resolve().parents[1]
E = 8


def vec(text, salt):
    g = torch.Generator().manual_seed(int(hashlib.md5((salt + text).encode()).hexdigest()[:8], 16))
    return torch.randn(E, generator=g)


class FrozenCLIP(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 4 * 4, E)

    def encode_image(self, x):
        return self.lin(x.flatten(1))


class StubMethod(nn.Module):
    """Just the PromptMethod interface DAPT talks to, with a learnable linear image encoder."""

    def __init__(self, k=3):
        super().__init__()
        torch.manual_seed(0)
        self.clip_model = FrozenCLIP().requires_grad_(False)
        self.img = nn.Linear(3 * 4 * 4, E)
        self.txt = nn.Parameter(torch.randn(k, E))
        self.deep = nn.Parameter(torch.randn(E) * 0.1)  # stands in for deep text prompts
        self.logit_scale = torch.tensor(10.0)
        self.multi_label = False  # set by the trainer, as on a PromptMethod

    def encode_image(self, x):
        return self.img(x.flatten(1))

    def encode_text(self):
        return self.txt

    def text_layer_prompts(self):
        return [None, self.deep]

    def encode_texts(self, sentences):
        return torch.stack([vec(s, "p") for s in sentences]) + self.deep

    def frozen_text_features(self, sentences):
        return torch.stack([vec(s, "f") for s in sentences])

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        return self.logit_scale * F.normalize(self.encode_image(x), dim=-1) @ F.normalize(self.encode_text(), dim=-1).t()

    def losses(self, x, y, image_features=None, text_features=None):
        img = self.encode_image(x) if image_features is None else image_features
        txt = self.encode_text() if text_features is None else text_features
        logits = self.logit_scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()
        if self.multi_label:
            return {"cls": F.multilabel_soft_margin_loss(logits, y.float())}, logits
        return {"cls": F.cross_entropy(logits, y)}, logits


def batch():
    torch.manual_seed(5)
    x = torch.randn(4, 3, 4, 4)
    m = (torch.rand(4, 1, 4, 4) > 0.5).float()
    return x, m, torch.tensor([0, 2, 1, 2])


def official_reference(method, x, m, y, epoch):
    """The official release's forward (spec 2.5), written out."""
    s = method.logit_scale
    names = VOCABULARIES["official32"]
    text = torch.cat([method.encode_text(), method.encode_texts([f"a clean origami {c}." for c in names])])
    tf = F.normalize(text[:-25], dim=-1)
    tb = F.normalize(text[-25:], dim=-1)
    zi = F.normalize(method.encode_image(x), dim=-1)
    zf = F.normalize(method.encode_image(x * m), dim=-1)
    zb = F.normalize(method.encode_image(x * (1 - m)), dim=-1)
    logits = s * zi @ tf.t()
    l_v = F.triplet_margin_loss(zi, zf.detach(), zb.detach(), margin=1.5)
    l_f = F.cross_entropy(s * zf.detach() @ tf.t(), y)
    yb = torch.argmax(zb @ tb.t(), dim=-1)
    l_b = F.cross_entropy(s * zb @ tb.t(), yb)
    extra = 0.1 * l_f + 0.5 * l_b if epoch > 6 else 0.8 * l_v
    return F.cross_entropy(logits, y) + extra, logits


@pytest.mark.parametrize("epoch", [0, 6, 7, 9])
def test_official_config_reproduces_official_formula(epoch):
    cfg = get_cfg_default()
    merge_from_file(cfg, str(REPO / "configs/trainers/DAPT/official.yaml"))
    method = StubMethod()
    x, m, y = batch()
    dec = Decoupler(cfg)
    losses, logits = dec.compute(method, x, m, y, epoch)
    total = sum(losses.values())
    ref, ref_logits = official_reference(method, x, m, y, epoch)
    assert logits.shape == (4, 3 + 7)  # ground..sky appended to the foreground logits, as released
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    assert total.item() == pytest.approx(ref.item(), rel=1e-5)
    assert set(losses) == ({"cls", "fg", "bg"} if epoch > 6 else {"cls", "triplet"})
    g_ours = torch.autograd.grad(total, [method.img.weight, method.txt, method.deep], allow_unused=True)
    g_ref = torch.autograd.grad(ref, [method.img.weight, method.txt, method.deep], allow_unused=True)
    for a, b in zip(g_ours, g_ref):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)
    # test-time logits carry the 7 extra background columns too
    assert dec.inference(method, x).shape == (4, 10)


def test_paper_config_eq7_with_frozen_clip_pseudo_labels():
    cfg = get_cfg_default()
    merge_from_file(cfg, str(REPO / "configs/trainers/MaPLe/dapt_vit_b16_t.yaml"))
    method = StubMethod()
    x, m, y = batch()
    dec = Decoupler(cfg)
    losses, logits = dec.compute(method, x, m, y, epoch=0)
    s = method.logit_scale
    names = VOCABULARIES["paper25"]
    sent = [f"a clean origami {c}." for c in names]
    zi, zf, zb = (method.encode_image(v) for v in (x, x * m, x * (1 - m)))
    t = method.encode_text()
    with torch.no_grad():
        z0 = F.normalize(method.clip_model.encode_image(x * (1 - m)), dim=-1)
        u0 = F.normalize(method.frozen_text_features(sent), dim=-1)
        yb = (z0 @ u0.t()).argmax(-1)
    tb = method.encode_texts(sent)
    n = lambda v: F.normalize(v, dim=-1)  # noqa: E731
    l1 = lambda a, b: (a - b).abs().sum(-1)  # noqa: E731
    l_v = F.relu(l1(n(zi), n(zf)) - l1(n(zi), n(zb)) + 5.0).mean()
    ref = {"cls": F.cross_entropy(s * n(zi) @ n(t).t(), y), "triplet": 0.6 * l_v,
           "fg": 0.4 * F.cross_entropy(s * n(zf) @ n(t).t(), y), "bg": 0.1 * F.cross_entropy(s * n(zb) @ n(tb).t(), yb)}
    assert logits.shape == (4, 3) and set(losses) == set(ref)
    for k in ref:
        assert losses[k].item() == pytest.approx(ref[k].item(), rel=1e-5), k
    assert dec.last["mask_fg_fraction"] == pytest.approx(m.mean().item())
    # L_f trains the image side here (no detach)
    g = torch.autograd.grad(losses["fg"], method.img.weight)[0]
    assert g.abs().sum() > 0


def test_frozen_image_side_drops_triplet():
    cfg = get_cfg_default()
    cfg.DAPT.ENABLED = True
    method = StubMethod()
    method.img.requires_grad_(False)
    x, m, y = batch()
    losses, _ = Decoupler(cfg).compute(method, x, m, y, epoch=0)
    assert set(losses) == {"cls", "fg", "bg"}


def test_multilabel_uses_soft_margin_for_cls_and_fg():
    cfg = get_cfg_default()
    cfg.DAPT.ENABLED = True
    method = StubMethod()
    method.multi_label = True  # the trainer sets it on the method and on the decoupler
    x, m, _ = batch()
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    losses, logits = Decoupler(cfg, multi_label=True).compute(method, x, m, y, epoch=0)
    s = method.logit_scale
    t = F.normalize(method.encode_text(), dim=-1)
    zi = F.normalize(method.encode_image(x), dim=-1)
    zf = F.normalize(method.encode_image(x * m), dim=-1)
    assert losses["cls"].item() == pytest.approx(F.multilabel_soft_margin_loss(s * zi @ t.t(), y).item(), rel=1e-5)
    assert losses["fg"].item() == pytest.approx(0.4 * F.multilabel_soft_margin_loss(s * zf @ t.t(), y).item(), rel=1e-5)
