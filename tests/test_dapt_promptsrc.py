"""DAPT+PromptSRC through the registered trainer: the step's terms are PromptSRC's own (on the
original image's features) plus DAPT's weighted L_v, L_f, L_b (setting III), each against an
independent computation, gradients included; one prompted image pass with gradients per step; the
official FG_EXTRA columns stay out of the self-regularising terms; GPA and DAPT's hook coexist and
a resumed DAPT+PromptSRC run is bit-identical."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from engine_fixtures import make_dm
from test_dapt_train import stand_in_dm

from dapt.config import get_cfg_default
from dapt.decouple.background import PAPER25
from dapt.decouple.gradcam import GradCamMasker
from dapt.decouple.integration import Decoupler, DAPTHook
from dapt.engine.build import build_trainer
from dapt.methods.promptsrc import PROMPTSRC_TEMPLATES, PromptSRCMethod
from dapt.trainers.promptsrc import GPAHook

REPO = Path(__file__).resolve().parents[1]
DAPT_CFG = REPO / "configs" / "trainers" / "PromptSRC" / "dapt_vit_b16_c2_ep20_batch4_4+4ctx.yaml"
B = 4


def dapt_src_cfg(tiny_name, source="precomputed", out=""):
    cfg = get_cfg_default()
    cfg.merge_from_file(str(DAPT_CFG))  # setting-III weights, PromptSRC's loss weights
    cfg.TRAINER.NAME = "PromptSRC"
    cfg.MODEL.BACKBONE.NAME = tiny_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    cfg.INPUT.SIZE = (32, 32)
    cfg.OUTPUT_DIR = str(out)
    c = cfg.TRAINER.PROMPTSRC
    c.PREC = "fp32"
    c.PROMPT_DEPTH_VISION = c.PROMPT_DEPTH_TEXT = 2
    cfg.DAPT.MASK.SOURCE = source
    return cfg


def build(tiny_name, source):
    torch.manual_seed(0)
    tr = build_trainer(dapt_src_cfg(tiny_name, source), dm=make_dm(batch_size=B))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # move the prompts off their initialisation
        for p in tr.model.learnable_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return tr


def batch(tr, source):
    g = torch.Generator().manual_seed(11)
    images = torch.randn(B, 3, 32, 32, generator=g)
    labels = torch.tensor([0, 2, 1, 3])
    if source == "gradcam":  # DAPT-G: this batch's Grad-CAM masks from the current prompted model
        tr.model.eval()
        masks = GradCamMasker.from_cfg(tr.cfg.DAPT.CAM)(tr.model, images, labels)[:, None].float()
    else:  # DAPT-S: fixed masks
        cells = (torch.rand(B, 1, 4, 4, generator=g) > 0.5).float()
        cells[:, :, 1:3, 1:3] = 1.0
        masks = cells.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    return images, labels, masks


def reference_terms(m, images, labels, masks):
    """Every term recomputed by hand: separate passes for I, I_f, I_b, open_clip's own frozen towers."""
    clip = m.clip_model
    scale = clip.logit_scale.exp()

    def n(x):
        return x / x.norm(dim=-1, keepdim=True)

    z_i, z_f, z_b = (n(m.encode_image(x)) for x in (images, masks * images, (1 - masks) * images))
    t = n(m.encode_text())
    logits = scale * z_i @ t.t()
    with torch.no_grad():
        per = torch.stack([clip.encode_text(m.tokenize([tp.replace("{}", c) for c in m.classnames]))
                           for tp in PROMPTSRC_TEMPLATES]).mean(0)
        zt = n(per)
        zi = n(clip.encode_image(images))
        p_zs = (scale * zi @ zt.t()).softmax(dim=1)
        bg_sent = [f"a clean origami {c}." for c in PAPER25]  # the paper's 25 background classes
        pseudo = (n(clip.encode_image((1 - masks) * images)) @ n(clip.encode_text(m.tokenize(bg_sent))).t()).argmax(1)
    t_bg = n(m.encode_texts(bg_sent))  # deep text prompts reach the frozen background sentences

    def ce(lg, y):
        return -lg.log_softmax(dim=1)[torch.arange(len(y)), y].mean()

    return {
        "cls": 1.0 * ce(logits, labels),
        "scl_text": 25 * (t - zt).abs().mean(),
        "scl_image": 10 * (z_i - zi).abs().mean(),
        "scl_kl": (p_zs * (p_zs.log() - logits.log_softmax(dim=1))).sum() / logits.numel(),
        "triplet": 0.4 * F.relu((z_i - z_f).abs().sum(-1) - (z_i - z_b).abs().sum(-1) + 5.0).mean(),
        "fg": 0.4 * ce(scale * z_f @ t.t(), labels),
        "bg": 0.5 * ce(scale * z_b @ t_bg.t(), pseudo),
    }, logits


@pytest.mark.parametrize("source", ["precomputed", "gradcam"])
def test_step_is_promptsrc_terms_plus_weighted_dapt_terms(tiny_name, source):
    tr = build(tiny_name, source)
    assert tr.dapt is not None and (tr.cfg.DAPT.LOSS.W_V, tr.cfg.DAPT.LOSS.W_F, tr.cfg.DAPT.LOSS.W_B) == (0.4, 0.4, 0.5)
    images, labels, masks = batch(tr, source)
    tr.model.train()
    tr.epoch = 0
    terms, logits = tr.compute_losses({"img": images, "label": labels, "mask": masks, "index": torch.arange(B)})
    ref, ref_logits = reference_terms(tr.model, images, labels, masks)
    assert set(terms) == set(ref)
    torch.testing.assert_close(logits.detach(), ref_logits.detach(), rtol=1e-5, atol=1e-5)
    for k in ref:
        assert float(ref[k].detach()) > 0, k
        torch.testing.assert_close(terms[k].detach(), ref[k].detach(), rtol=1e-4, atol=1e-6, msg=lambda s: f"{k}: {s}")
    params = list(tr.model.learnable_parameters().values())
    got = torch.autograd.grad(sum(terms.values()), params, allow_unused=True)
    want = torch.autograd.grad(sum(ref.values()), params, allow_unused=True)
    for name, a, b in zip(tr.model.learnable_parameters(), got, want):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()), msg=lambda s: f"{name}: {s}")
    assert sum(a.abs().sum() for a in got if a is not None) > 0


@pytest.mark.parametrize("source", ["precomputed", "gradcam"])
def test_one_prompted_image_pass_with_gradients_per_step(tiny_name, source):
    tr = build(tiny_name, source)
    images, labels, masks = batch(tr, source)
    m = tr.model
    m.template_text_features()  # computed once per class list (here: before the step)
    calls = {"image": [], "frozen_image": [], "text": 0, "text_tokens": 0}
    enc_img, enc_txt, frozen, tokens = m.encode_image, m.encode_text, m.clip_model.encode_image, \
        m.text_encoder.encode_tokens

    def counted_image(x):
        calls["image"].append((torch.is_grad_enabled(), x.shape[0]))
        return enc_img(x)

    def counted_text(*a, **k):
        calls["text"] += 1
        return enc_txt(*a, **k)

    def counted_frozen(x):
        calls["frozen_image"].append((torch.is_grad_enabled(), x.detach().clone()))
        return frozen(x)

    def counted_tokens(*a, **k):
        calls["text_tokens"] += 1
        return tokens(*a, **k)

    m.encode_image, m.encode_text, m.clip_model.encode_image = counted_image, counted_text, counted_frozen
    m.text_encoder.encode_tokens = counted_tokens
    tr.model.train()
    tr.epoch = 0
    losses, _ = tr.compute_losses({"img": images, "label": labels, "mask": masks, "index": torch.arange(B)})
    assert calls["image"] == [(True, 3 * B)], calls["image"]
    assert calls["text"] == 1
    # frozen no-grad passes: PromptSRC's frozen features of I, then L_b's pseudo-labels on I_b
    assert [g for g, _ in calls["frozen_image"]] == [False, False]
    torch.testing.assert_close(calls["frozen_image"][0][1], images)
    torch.testing.assert_close(calls["frozen_image"][1][1], (1 - masks) * images)
    first = calls["text_tokens"]  # the frozen background sentences: computed on the first step only
    calls["text_tokens"] = 0
    calls["image"], calls["frozen_image"] = [], []
    tr.compute_losses({"img": images, "label": labels, "mask": masks, "index": torch.arange(B)})
    assert first == 1 and calls["text_tokens"] == 0
    assert calls["image"] == [(True, 3 * B)] and len(calls["frozen_image"]) == 2


def test_fg_extra_rows_stay_out_of_the_self_regularising_terms(tiny_clip, tokenizer, tiny_name):
    cfg = dapt_src_cfg(tiny_name)
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / "DAPT" / "official.yaml"))  # FG_EXTRA 7
    assert cfg.DAPT.BG.FG_EXTRA == 7
    classes = ["red", "green", "blue", "yellow"]
    torch.manual_seed(0)
    m = PromptSRCMethod(cfg, classes, tiny_clip, tokenizer)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 3, 1])
    masks = torch.zeros(3, 1, 32, 32)
    masks[..., 8:24, 4:20] = 1
    terms, logits = Decoupler(cfg).compute(m, images, masks, labels, epoch=0)
    assert logits.shape == (3, 4 + 7)  # the extra background columns join the classification
    with torch.no_grad():
        t = F.normalize(m.encode_text(), dim=-1)
        zt = m.template_text_features()
        scale = tiny_clip.logit_scale.exp()
        zi = F.normalize(tiny_clip.encode_image(images), dim=-1)
        p_zs = (scale * zi @ zt.t()).softmax(dim=1)
        cls_logits = logits[:, :4]
        kl = (p_zs * (p_zs.log() - cls_logits.log_softmax(dim=1))).sum() / (3 * 4)
        ce = F.cross_entropy(logits, labels)  # over all 11 columns
    torch.testing.assert_close(terms["scl_text"].detach(), 25 * (t - zt).abs().mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["scl_kl"].detach(), kl, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(terms["cls"].detach(), ce, rtol=1e-5, atol=1e-6)


def _train(tiny_name, data_root, out, epochs=3):
    from dapt.utils.misc import set_random_seed

    cfg = dapt_src_cfg(tiny_name, "precomputed", out)
    cfg.DAPT.MASK.STORE = "gt"
    cfg.SEED = 1
    cfg.OPTIM.MAX_EPOCH = epochs
    cfg.OPTIM.LR = 0.05
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 3
    cfg.TRAIN.CHECKPOINT_FREQ = 1
    cfg.TEST.NO_TEST = True
    set_random_seed(cfg.SEED)
    t = build_trainer(cfg, dm=stand_in_dm(data_root))
    t.train()
    return t


@pytest.mark.slow
def test_gpa_and_dapt_hooks_coexist_and_resume_is_bit_identical(tiny_name, tmp_path):
    full = _train(tiny_name, tmp_path / "data", tmp_path / "full")
    kinds = [type(h) for h in full.hooks]
    assert DAPTHook in kinds and GPAHook in kinds
    # the GPA running sum holds exactly the learnable state (nothing of DAPT's, no frozen CLIP weight)
    assert list(full.gpa_sum) == list(full.model.learnable_parameters())
    assert full.dapt.last["mask_fg_fraction"] > 0  # DAPT trained on the store's masks
    out = tmp_path / "resumed"
    _train(tiny_name, tmp_path / "data2", out)
    folder = out / "VLPromptLearner"
    for e in (2, 3):
        (folder / f"model.pth.tar-{e}").unlink()  # as if the run died during epoch 2
    resumed = _train(tiny_name, tmp_path / "data2", out)
    assert resumed.start_epoch == 1
    ref, got = full.get_model_state(), resumed.get_model_state()
    assert list(ref) == list(got)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    for k in full.gpa_sum:
        assert torch.equal(full.gpa_sum[k], resumed.gpa_sum[k]), k
