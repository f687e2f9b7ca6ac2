"""PromptSRC: the 60 templates, every loss term (and its gradient) against an independent
computation on a tiny CLIP, GPA weights and aggregation, resume, upstream checkpoints."""
import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from engine_fixtures import CLASSNAMES, make_dm

from dapt.config import get_cfg_default
from dapt.engine.build import build_trainer
from dapt.methods.promptsrc import PROMPTSRC_TEMPLATES, PromptSRCMethod
from dapt.trainers.promptsrc import gpa_weights

IMAGES = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
LABELS = torch.tensor([0, 1, 2, 3, 1])


def src_cfg(tiny_name, out=None, **over):
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "PromptSRC"
    cfg.MODEL.BACKBONE.NAME = tiny_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    cfg.SEED = 1
    cfg.OUTPUT_DIR = str(out or "")
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.05
    cfg.OPTIM.MAX_EPOCH = 4
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = "constant"
    cfg.TRAIN.CHECKPOINT_FREQ = 1
    cfg.TEST.NO_TEST = True
    c = cfg.TRAINER.PROMPTSRC
    c.PROMPT_DEPTH_VISION = 2
    c.PROMPT_DEPTH_TEXT = 2
    c.GPA_MEAN = 3
    c.GPA_STD = 1
    for k, v in over.items():
        node = cfg
        *path, leaf = k.split(".")
        for p in path:
            node = getattr(node, p)
        setattr(node, leaf, v)
    return cfg


@pytest.fixture()
def method(tiny_clip, tokenizer, tiny_name):
    torch.manual_seed(0)
    m = PromptSRCMethod(src_cfg(tiny_name), CLASSNAMES, tiny_clip, tokenizer)
    with torch.no_grad():  # move the prompts away from their initialisation
        for p in m.learnable_parameters().values():
            p.add_(0.05 * torch.randn_like(p))
    return m


def test_templates_are_upstreams_60_in_order():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    assert len(PROMPTSRC_TEMPLATES) == 60 and len(set(PROMPTSRC_TEMPLATES)) == 60
    openai = [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    assert all(t in openai for t in PROMPTSRC_TEMPLATES)
    # upstream's trainers/imagenet_templates.py list, joined by newlines
    digest = hashlib.sha256("\n".join(PROMPTSRC_TEMPLATES).encode()).hexdigest()
    assert digest == "dc3398ed3ffc7c259342582bc0f36d7ac66c4dee17981a37b77b0fc9c23d4f72"
    assert PROMPTSRC_TEMPLATES[0] == "a photo of a {}." and PROMPTSRC_TEMPLATES[-1] == "itap of the {}."


def test_frozen_text_features_average_then_normalise_computed_once(method, tiny_clip, tokenizer):
    calls = []
    enc = method.text_encoder.encode_tokens
    method.text_encoder.encode_tokens = lambda *a, **k: calls.append(1) or enc(*a, **k)
    got = method.template_text_features()
    method.losses(IMAGES, LABELS)
    method.losses(IMAGES, LABELS)
    assert len(calls) == 1  # once per class list, never per step
    with torch.no_grad():  # open_clip's own text tower, template by template
        per = torch.stack([tiny_clip.encode_text(tokenizer([t.replace("{}", c) for c in CLASSNAMES]))
                           for t in PROMPTSRC_TEMPLATES])
    expected = F.normalize(per.mean(0), dim=-1)
    assert torch.allclose(got, expected, atol=1e-5)
    # averaging normalised features would be another vector
    assert not torch.allclose(F.normalize(F.normalize(per, dim=-1).mean(0), dim=-1), expected, atol=1e-4)


def _reference_terms(m, tiny_clip, images, labels):
    img = m.encode_image(images)
    txt = m.encode_text()
    img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
    scale = tiny_clip.logit_scale.exp()
    logits = scale * img @ txt.t()
    with torch.no_grad():
        zi = tiny_clip.encode_image(images)
        zi = zi / zi.norm(dim=-1, keepdim=True)
        per = torch.stack([tiny_clip.encode_text(m.tokenize([t.replace("{}", c) for c in m.classnames]))
                           for t in PROMPTSRC_TEMPLATES]).mean(0)
        zt = per / per.norm(dim=-1, keepdim=True)
        zl = scale * zi @ zt.t()
    p_zs = zl.softmax(dim=1)
    kl = (p_zs * (p_zs.log() - logits.log_softmax(dim=1))).sum() / (logits.shape[0] * logits.shape[1])
    return {
        "cls": -logits.log_softmax(dim=1)[torch.arange(len(labels)), labels].mean(),
        "scl_text": 25 * (txt - zt).abs().mean(),
        "scl_image": 10 * (img - zi).abs().mean(),
        "scl_kl": kl,
    }, logits


def test_every_term_and_gradient_match_independent_computation(method, tiny_clip):
    terms, logits = method.losses(IMAGES, LABELS)
    ref, ref_logits = _reference_terms(method, tiny_clip, IMAGES, LABELS)
    assert set(terms) == {"cls", "scl_text", "scl_image", "scl_kl"}
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    params = list(method.learnable_parameters().values())
    for k in terms:
        assert float(terms[k].detach()) > 0
        assert torch.allclose(terms[k], ref[k], rtol=1e-4, atol=1e-6), k
        g = torch.autograd.grad(terms[k], params, retain_graph=True, allow_unused=True)
        g_ref = torch.autograd.grad(ref[k], params, retain_graph=True, allow_unused=True)
        for a, b in zip(g, g_ref):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.allclose(a, b, rtol=1e-3, atol=1e-7), k
    # the text term reaches the text prompts only, the image term the visual prompts only
    names = list(method.learnable_parameters())
    g_text = dict(zip(names, torch.autograd.grad(terms["scl_text"], params, retain_graph=True, allow_unused=True)))
    assert g_text["image_encoder.VPT"] is None and g_text["prompt_learner.ctx"].abs().sum() > 0


def test_given_features_are_used(method):
    img, txt = method.encode_image(IMAGES), method.encode_text()
    a, la = method.losses(IMAGES, LABELS)
    b, lb = method.losses(IMAGES, LABELS, image_features=img, text_features=txt)
    assert torch.allclose(la, lb, atol=1e-6) and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    c, _ = method.losses(IMAGES, LABELS, image_features=img * 0 + img.mean(0), text_features=txt)
    assert not torch.allclose(c["cls"], a["cls"])


def test_gpa_weights_are_the_normalised_gaussian():
    for mean, std, n in [(15, 1, 20), (6, 10, 20), (30, 30, 50), (45, 5, 50)]:
        w = torch.tensor(gpa_weights(mean, std, n), dtype=torch.float64)
        e = torch.arange(1, n + 1, dtype=torch.float64)
        dens = torch.distributions.Normal(float(mean), float(std)).log_prob(e).exp()
        assert torch.allclose(w, dens / dens.sum(), atol=1e-12)
        assert abs(float(w.sum()) - 1) < 1e-12
    w = gpa_weights(15, 1, 20)
    assert sum(w[12:17]) > 0.99  # epochs 13-17 carry almost everything (base-to-novel)
    with pytest.raises(ValueError, match="GPA_STD"):
        gpa_weights(15, 0, 20)


def _train(cfg, pre_gpa=None):
    from dapt.utils.misc import set_random_seed

    set_random_seed(cfg.SEED)
    t = build_trainer(cfg, dm=make_dm(sequential=False))
    if pre_gpa is not None:
        from dapt.engine.trainer import HookBase

        class Record(HookBase):  # runs before GPA: the epoch's own prompts
            def after_epoch(self):
                pre_gpa.append({k: v.detach().clone() for k, v in self.trainer.model.learnable_parameters().items()})

        rec = Record()
        rec.trainer = t
        t.hooks.insert(0, rec)
    t.train()
    return t


def test_gpa_aggregates_the_hand_weighted_sum_of_epochs(tiny_name, tmp_path):
    pre = []
    t = _train(src_cfg(tiny_name, tmp_path), pre_gpa=pre)
    w = gpa_weights(3, 1, 4)
    folder = tmp_path / "VLPromptLearner"
    saved = [torch.load(folder / f"model.pth.tar-{e}", weights_only=True) for e in range(1, 5)]
    # the checkpoints of epochs 1-3 hold that epoch's prompts; the running sum after epoch 2
    # is w1 * s1 + w2 * s2 of the saved epochs
    for k, v in saved[1]["gpa"].items():
        upstream_key = k.replace("text_prompts.", "text_encoder.")
        hand = w[0] * saved[0]["state_dict"][upstream_key] + w[1] * saved[1]["state_dict"][upstream_key]
        assert torch.allclose(v, hand, atol=1e-7)
    final = t.model.learnable_parameters()
    for k, p in final.items():
        upstream_key = k.replace("text_prompts.", "text_encoder.")
        hand = sum(w[e] * (saved[e]["state_dict"][upstream_key] if e < 3 else pre[3][k]) for e in range(4))
        assert torch.allclose(p.detach(), hand, atol=1e-6), k
        assert not torch.allclose(p.detach(), pre[3][k], atol=1e-6)  # GPA changed the last-epoch prompts
        assert torch.equal(saved[3]["state_dict"][upstream_key], p.detach())  # and the last checkpoint has them
    for e in range(3):
        assert torch.equal(saved[e]["state_dict"]["prompt_learner.ctx"], pre[e]["prompt_learner.ctx"])


def test_resume_mid_run_is_bit_identical_gpa_included(tiny_name, tmp_path):
    full = _train(src_cfg(tiny_name, tmp_path / "full"))
    cfg = src_cfg(tiny_name, tmp_path / "resumed")
    _train(cfg)
    folder = tmp_path / "resumed" / "VLPromptLearner"
    for e in (3, 4):
        (folder / f"model.pth.tar-{e}").unlink()  # as if the run died during epoch 3
    resumed = _train(cfg)
    assert resumed.start_epoch == 2
    ref, got = full.get_model_state(), resumed.get_model_state()
    assert list(ref) == list(got)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    for k in full.gpa_sum:
        assert torch.equal(full.gpa_sum[k], resumed.gpa_sum[k]), k
    ck_full = torch.load(tmp_path / "full" / "VLPromptLearner" / "model.pth.tar-4", weights_only=True)
    ck_res = torch.load(folder / "model.pth.tar-4", weights_only=True)
    assert all(torch.equal(ck_full["gpa"][k], ck_res["gpa"][k]) for k in ck_full["gpa"])


def _upstream_checkpoint(method, tiny_clip, n_train_classes):
    """A state dict as upstream's PromptSRC saves it: the whole CustomCLIP in fp16, frozen towers
    included, class-dependent token_prefix / token_suffix buffers for its training classes."""
    sd = {}
    ctx_dim = method.text_encoder.width
    sd["prompt_learner.ctx"] = method.prompt_learner.ctx.detach()
    sd["prompt_learner.token_prefix"] = torch.randn(n_train_classes, 1, ctx_dim)
    sd["prompt_learner.token_suffix"] = torch.randn(n_train_classes, 72, ctx_dim)
    for k, v in tiny_clip.visual.state_dict().items():
        sd["prompt_learner.ZS_image_encoder." + k] = v
        sd["image_encoder." + k] = v
    for k, v in method.image_encoder.state_dict().items():
        sd["image_encoder." + k] = v
    for k, v in tiny_clip.transformer.state_dict().items():
        sd["text_encoder.transformer." + k] = v
    for k, v in method.text_prompts.state_dict().items():
        sd["text_encoder." + k] = v
    for k in ("positional_embedding", "text_projection"):
        sd["text_encoder." + k] = getattr(tiny_clip, k)
    for k, v in tiny_clip.ln_final.state_dict().items():
        sd["text_encoder.ln_final." + k] = v
    sd["logit_scale"] = tiny_clip.logit_scale
    return {k: v.detach().clone().half() for k, v in sd.items()}


def test_upstream_checkpoint_evaluates_unchanged(tiny_name, tmp_path, tiny_clip, tokenizer):
    torch.manual_seed(5)
    trained = PromptSRCMethod(src_cfg(tiny_name), CLASSNAMES[:2], tiny_clip, tokenizer)  # "trained on base"
    with torch.no_grad():
        for p in trained.learnable_parameters().values():
            p.add_(0.1 * torch.randn_like(p))
    sd = _upstream_checkpoint(trained, tiny_clip, n_train_classes=2)
    folder = tmp_path / "up" / "VLPromptLearner"
    folder.mkdir(parents=True)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 20)
    ckpt = {"state_dict": sd, "epoch": 20, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "val_result": None}
    torch.save(ckpt, folder / "model.pth.tar-20")
    (folder / "checkpoint").write_text("model.pth.tar-20\n")
    cfg = src_cfg(tiny_name, tmp_path / "eval")
    t = build_trainer(cfg, dm=make_dm())  # all four classes: the novel ones get their own buffers
    t.load_model(str(tmp_path / "up"), epoch=20)
    for k, p in t.model.learnable_parameters().items():
        up = k.replace("text_prompts.", "text_encoder.")
        assert torch.equal(p.detach(), sd[up].float()), k
    # the evaluated logits are those of the fp16-rounded prompts on the current class names
    ref = PromptSRCMethod(src_cfg(tiny_name), CLASSNAMES, t.model.clip_model, tokenizer)
    with torch.no_grad():
        for (k, p), q in zip(ref.learnable_parameters().items(), trained.learnable_parameters().values()):
            p.copy_(q.half().float())
    t.model.eval()
    ref.eval()
    with torch.no_grad():
        assert torch.allclose(t.model_inference(IMAGES), ref(IMAGES), atol=1e-5)
    acc = t.test()
    assert 0 <= acc <= 100
    # a checkpoint of another method is one clear error
    torch.save({"state_dict": {"ctx": torch.zeros(4, 64)}, "epoch": 1}, folder / "model.pth.tar-20")
    with pytest.raises(KeyError, match="lacks learnable tensors"):
        t.load_model(str(tmp_path / "up"), epoch=20)


def test_upstream_config_files(tmp_path):
    from pathlib import Path

    from dapt.config import merge_from_file

    root = Path(__file__).resolve().parents[1] / "configs" / "trainers" / "PromptSRC"
    expect = {
        "vit_b16_c2_ep20_batch4_4+4ctx.yaml": (20, 9, 15, 1),
        "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml": (20, 3, 6, 10),
        "vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml": (50, 9, 30, 30),
    }
    for name, (ep, depth, gm, gs) in expect.items():
        cfg = get_cfg_default()
        merge_from_file(cfg, str(root / name))
        c = cfg.TRAINER.PROMPTSRC
        assert (cfg.OPTIM.MAX_EPOCH, c.PROMPT_DEPTH_VISION, c.PROMPT_DEPTH_TEXT, c.GPA_MEAN, c.GPA_STD) == (ep, depth, depth, gm, gs)
        assert (c.N_CTX_VISION, c.N_CTX_TEXT, c.TEXT_LOSS_WEIGHT, c.IMAGE_LOSS_WEIGHT, c.PREC) == (4, 4, 25, 10, "fp16")
        assert (cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.WARMUP_CONS_LR) == (0.0025, 4, 1e-5)
    cfg = get_cfg_default()
    merge_from_file(cfg, str(root / "dapt_vit_b16_c2_ep20_batch4_4+4ctx.yaml"))
    assert cfg.DAPT.ENABLED and (cfg.DAPT.LOSS.W_V, cfg.DAPT.LOSS.W_F, cfg.DAPT.LOSS.W_B) == (0.4, 0.4, 0.5)
    assert math.isclose(sum(gpa_weights(15, 1, 20)), 1.0)
