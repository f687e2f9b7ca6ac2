"""DAPT composes with the method's own objective: the method's terms (computed on I's features from
the one batched [I; I_f; I_b] pass) are kept, DAPT adds its weighted terms, and the prompted image
encoder runs once per step with gradients."""
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dapt.config import get_cfg_default
from dapt.decouple.integration import Decoupler
from dapt.methods.ivlp import IVLPMethod

HERE = Path(__file__).resolve().parent
CLASSES = ["dog", "cat", "sea lion"]


def _load_maker():
    spec = importlib.util.spec_from_file_location("_make_reference_losses", HERE / "make_reference_losses.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class IVLPWithExtras(IVLPMethod):
    """IVLP plus two terms of its own: an L2 penalty on the text context and one on I's features."""

    def losses(self, images, labels, image_features=None, text_features=None):
        feats = self.encode_image(images) if image_features is None else image_features
        terms, logits = super().losses(images, labels, feats, text_features)
        terms["ctx_l2"] = 0.3 * self.prompt_learner.ctx.pow(2).sum()
        terms["feat_l2"] = 0.01 * feats.pow(2).sum(-1).mean()
        return terms, logits


def setup(tiny_clip, tokenizer, w_cls=0.5):
    cfg = get_cfg_default()
    cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 2
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = 2
    cfg.DAPT.LOSS.W_CLS = w_cls
    torch.manual_seed(0)
    method = IVLPWithExtras(cfg, CLASSES, tiny_clip, tokenizer)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 32, 32, generator=g)
    m = torch.zeros(3, 1, 32, 32)
    m[..., 8:24, 4:20] = 1
    return cfg, method, x, m, torch.tensor([0, 2, 1])


def test_method_terms_survive_dapt_with_exact_values(tiny_clip, tokenizer):
    cfg, method, x, m, y = setup(tiny_clip, tokenizer, w_cls=0.5)
    losses, logits = Decoupler(cfg).compute(method, x, m, y, epoch=0)
    assert set(losses) == {"cls", "ctx_l2", "feat_l2", "fg", "bg", "triplet"}
    # independent computation: the method alone, unbatched, on the original images
    with torch.no_grad():
        z = method.encode_image(x)
        t = method.encode_text()
        ctx = method.prompt_learner.ctx
        scale = tiny_clip.logit_scale.exp()
        ref_logits = scale * F.normalize(z, dim=-1) @ F.normalize(t, dim=-1).t()
    torch.testing.assert_close(logits.detach(), ref_logits, rtol=1e-5, atol=1e-5)
    # W_CLS scales the method's classification term only; the method's other terms keep their own weights
    assert losses["cls"].item() == pytest.approx(0.5 * F.cross_entropy(ref_logits, y).item(), rel=1e-5)
    assert losses["ctx_l2"].item() == pytest.approx(0.3 * ctx.pow(2).sum().item(), rel=1e-6)
    assert losses["feat_l2"].item() == pytest.approx(0.01 * z.pow(2).sum(-1).mean().item(), rel=1e-5)
    # the extra terms reach the parameters they depend on
    g, = torch.autograd.grad(losses["ctx_l2"], [method.prompt_learner.ctx], retain_graph=True)
    torch.testing.assert_close(g, 0.6 * ctx.detach())


def test_method_alone_keeps_its_terms(tiny_clip, tokenizer):
    cfg, method, x, m, y = setup(tiny_clip, tokenizer)
    losses, _ = method.losses(x, y)
    assert set(losses) == {"cls", "ctx_l2", "feat_l2"}


def test_a_method_term_named_like_a_dapt_term_is_refused(tiny_clip, tokenizer):
    cfg, method, x, m, y = setup(tiny_clip, tokenizer)

    class Clash(IVLPMethod):
        def losses(self, images, labels, image_features=None, text_features=None):
            terms, logits = super().losses(images, labels, image_features, text_features)
            terms["fg"] = terms["cls"] * 0
            return terms, logits

    torch.manual_seed(0)
    clash = Clash(cfg, CLASSES, tiny_clip, tokenizer)
    with pytest.raises(ValueError, match="terms named \\['fg'\\]"):
        Decoupler(cfg).compute(clash, x, m, y, epoch=0)


# (DAPT config, epoch) -> the prompted image passes of one step, as (gradients on, batch size) for a
# batch of 4: the paper's config backpropagates through I, I_f and I_b (one batched pass); the official
# config detaches what its terms read of I_f and I_b (TRIPLET.DETACH_POS_NEG, LOSS.F_DETACH_IMAGE), so
# those views run in one no-grad pass: before its loss switch (L_v alone) [I_f; I_b], after it (L_f on a
# detached I_f, L_b through I_b) I_f alone.
IMAGE_PASSES = {("paper", 0): [(True, 12)],
                ("official", 0): [(True, 4), (False, 8)],
                ("official", 7): [(True, 8), (False, 4)]}


@pytest.mark.parametrize("trainer", ["CoOp", "VPT", "IVLP", "MaPLe"])
@pytest.mark.parametrize("dapt,epoch", list(IMAGE_PASSES))
def test_one_prompted_image_pass_with_gradients_per_step(tiny_name, trainer, dapt, epoch):
    maker = _load_maker()
    tr = maker.build_trainer(tiny_name, trainer, dapt, "dapt-s")
    images, labels, masks = maker.fixed_batch()
    calls = {"image": [], "frozen_image": [], "text": 0}
    inside = []
    method = tr.model
    encode_image, encode_text = method.encode_image, method.encode_text
    frozen = method.clip_model.encode_image

    def counted_image(x):
        calls["image"].append((torch.is_grad_enabled(), x.shape[0]))
        inside.append(1)
        try:
            return encode_image(x)
        finally:
            inside.pop()

    def counted_text(*a, **k):
        calls["text"] += 1
        return encode_text(*a, **k)

    def counted_frozen(x):
        if not inside:  # a frozen CLIP pass of its own, not the method's image encoder (CoOp's is CLIP's)
            calls["frozen_image"].append((torch.is_grad_enabled(), x.shape[0]))
        return frozen(x)

    method.encode_image, method.encode_text, method.clip_model.encode_image = counted_image, counted_text, counted_frozen
    tr.model.train()
    tr.epoch = epoch
    losses, _ = tr.compute_losses({"img": images, "label": labels, "mask": masks, "index": torch.arange(4)})
    expected = IMAGE_PASSES[(dapt, epoch)]
    if trainer == "CoOp" and (dapt, epoch) == ("official", 0):
        expected = [(True, 4)]  # L_v alone, skipped for CoOp (no learnable image input): no view is read
    assert calls["image"] == expected, calls
    assert sum(1 for g, _ in calls["image"] if g) == 1  # ONE prompted pass with gradients
    assert calls["text"] == 1
    # the frozen, no-grad passes: L_b's pseudo-labels on I_b (paper: frozen CLIP); CoOp's image encoder
    # is the frozen CLIP, so its prompted pass already holds those features and none runs; none otherwise
    frozen_pass = "bg" in losses and dapt == "paper" and trainer != "CoOp"
    assert calls["frozen_image"] == ([(False, len(images))] if frozen_pass else [])
