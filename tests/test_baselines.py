"""VPT, IVLP, MaPLe, CoCoOp: forward against hand computations, frozen encoders, training, sizes."""
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from dapt.config import get_cfg_default
from dapt.trainers.cocoop import CoCoOp, CoCoOpMethod
from dapt.trainers.ivlp import IVLP, IVLPMethod
from dapt.trainers.maple import MaPLe, MaPLeMethod
from dapt.trainers.vpt import VPT, VPTMethod

def _load_image_reference():
    """The image tower's hand computation from test_image_encoder.py (tests are not a package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_image_encoder_reference",
                                                  Path(__file__).with_name("test_image_encoder.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.reference_image_features


reference_image_features = _load_image_reference()

logger = logging.getLogger(__name__)

CLASSES = ["dog", "golden_retriever", "sea lion"]
NAMES = [c.replace("_", " ") for c in CLASSES]


def make(method, tiny_clip, tokenizer, node, seed=0, **kw):
    cfg = get_cfg_default()
    for k, v in kw.items():
        setattr(getattr(cfg.TRAINER, node), k, v)
    torch.manual_seed(seed)
    return method(cfg, CLASSES, tiny_clip, tokenizer)


def perturb(m, seed=5):
    """Move every learnable tensor away from its initialisation (so tests see them used)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.learnable_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def _causal_attention(attn, x):
    """(L, N, D) causal self-attention written out from the module's weights."""
    L, N, D = x.shape
    h = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(L, N, h, D // h).permute(1, 2, 0, 3) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / math.sqrt(D // h)
    s = s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    out = (torch.softmax(s, dim=-1) @ v).permute(2, 0, 1, 3).reshape(L, N, D)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def reference_text(clip, tokenizer, texts, ctx=None, deep=None):
    """Upstream's text path on all 77 tokens, sequence-first: ctx written at 1 .. n (ctx (n, D) or
    (N, n, D)), block i >= 1 overwrites 1 .. n with deep[i], EOT token -> ln_final -> projection."""
    ids = tokenizer(texts)
    x = clip.token_embedding(ids).clone()
    if ctx is not None:
        n = ctx.shape[-2]
        x[:, 1:1 + n] = ctx
    x = (x + clip.positional_embedding).permute(1, 0, 2)
    for i, blk in enumerate(clip.transformer.resblocks):
        if deep is not None and 0 < i < len(deep) and deep[i] is not None:
            x = x.clone()
            x[1:1 + deep[i].shape[0]] = deep[i].unsqueeze(1)
        x = x + _causal_attention(blk.attn, blk.ln_1(x))
        x = x + blk.mlp(blk.ln_2(x))
    x = clip.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(len(texts)), ids.argmax(-1)] @ clip.text_projection


def clip_logits(clip, img, txt):
    return clip.logit_scale.exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()


IMAGES = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- zero-length prompts = frozen CLIP
def test_zero_length_prompts_equal_open_clip(tiny_clip, tokenizer):
    plain = tokenizer([f"a photo of a {n}." for n in NAMES])
    with torch.no_grad():
        ref_img, ref_txt = tiny_clip.encode_image(IMAGES), tiny_clip.encode_text(plain)
        vpt = make(VPTMethod, tiny_clip, tokenizer, "VPT", N_CTX_VISION=0, PROMPT_DEPTH_VISION=2)
        ivlp = make(IVLPMethod, tiny_clip, tokenizer, "IVLP", N_CTX_VISION=0, N_CTX_TEXT=0, PROMPT_DEPTH_VISION=2,
                    PROMPT_DEPTH_TEXT=2)
        maple = make(MaPLeMethod, tiny_clip, tokenizer, "MAPLE", N_CTX=0, PROMPT_DEPTH=2)
        for m in (vpt, ivlp, maple):
            assert torch.allclose(m.encode_image(IMAGES), ref_img, atol=1e-5), type(m).__name__
            assert torch.allclose(m.encode_text(), ref_txt, atol=1e-5), type(m).__name__
        # IVLP with its 4 init words as (shallow) context is the plain prompt too
        ivlp4 = make(IVLPMethod, tiny_clip, tokenizer, "IVLP", N_CTX_VISION=0, N_CTX_TEXT=4, PROMPT_DEPTH_VISION=0,
                     PROMPT_DEPTH_TEXT=1)
        assert torch.allclose(ivlp4.encode_text(), ref_txt, atol=1e-5)
        # CoCoOp with a zeroed meta-net and "a photo of a" context: every image sees the plain prompt
        cocoop = make(CoCoOpMethod, tiny_clip, tokenizer, "COCOOP", CTX_INIT="a photo of a")
        cocoop.prompt_learner.meta_net.linear2.weight.zero_()
        cocoop.prompt_learner.meta_net.linear2.bias.zero_()
        cond = cocoop.encode_text(cocoop.encode_image(IMAGES))
        assert torch.allclose(cond, ref_txt.expand(2, -1, -1), atol=1e-5)
        assert torch.allclose(cocoop(IMAGES), clip_logits(tiny_clip, ref_img, ref_txt), atol=1e-4)


# ---------------------------------------------------------------- one forward against a hand computation
def test_maple_matches_reference(tiny_clip, tokenizer):
    m = make(MaPLeMethod, tiny_clip, tokenizer, "MAPLE", N_CTX=2, PROMPT_DEPTH=2, CTX_INIT="a photo of a")
    pl = m.prompt_learner
    # upstream's initialisation: ctx = embeddings of "a photo"; the couplings start as one layer's copies
    ids = tokenizer(["a photo of a"])
    assert torch.equal(pl.ctx.detach(), tiny_clip.token_embedding(ids)[0, 1:3])
    assert pl.prompt_prefix == "a photo of a"
    assert len(pl.compound_prompts_text) == 1 and pl.compound_prompts_text[0].shape == (2, 64)
    perturb(m)
    with torch.no_grad():
        ctx, p1 = pl.ctx, pl.compound_prompts_text[0]
        W, b = pl.proj.weight, pl.proj.bias
        W1, b1 = pl.compound_prompt_projections[0].weight, pl.compound_prompt_projections[0].bias
        img = reference_image_features(tiny_clip.visual, IMAGES, ctx @ W.t() + b, [None, p1 @ W1.t() + b1])
        txt = reference_text(tiny_clip, tokenizer, [f"a photo of a {n}." for n in NAMES], ctx, [None, p1])
        assert torch.allclose(m(IMAGES), clip_logits(tiny_clip, img, txt), atol=1e-4)
        # background prompts: learned context before other names; whole sentences get the deep prompts
        bg = reference_text(tiny_clip, tokenizer, ["a photo of a grass.", "a photo of a sky."], ctx, [None, p1])
        assert torch.allclose(m.encode_text_with_context(["grass", "sky"]), bg, atol=1e-5)
        sent = reference_text(tiny_clip, tokenizer, ["a clean origami grass."], None, [None, p1])
        assert torch.allclose(m.encode_texts(["a clean origami grass."]), sent, atol=1e-5)


def test_maple_init_rules(tiny_clip, tokenizer):
    m = make(MaPLeMethod, tiny_clip, tokenizer, "MAPLE", N_CTX=6, PROMPT_DEPTH=3)
    pl = m.prompt_learner
    assert pl.prompt_prefix == " ".join(["X"] * 6)  # more than 4 tokens: random init, as upstream
    assert pl.ctx.std().item() == pytest.approx(0.02, rel=0.35)
    w0, w1 = (pl.compound_prompt_projections[i].weight for i in range(2))
    assert torch.equal(w0, w1) and not torch.equal(w0, pl.proj.weight)  # copies of one layer, proj separate
    assert not torch.equal(pl.compound_prompts_text[0], pl.compound_prompts_text[1])


def test_ivlp_matches_reference(tiny_clip, tokenizer):
    m = make(IVLPMethod, tiny_clip, tokenizer, "IVLP", N_CTX_VISION=3, N_CTX_TEXT=2, PROMPT_DEPTH_VISION=2,
             PROMPT_DEPTH_TEXT=2)
    perturb(m)
    with torch.no_grad():
        v0 = m.image_encoder.VPT
        v1 = m.image_encoder.transformer.resblocks["1"].VPT_shallow
        t1 = m.text_prompts.transformer.resblocks["1"].VPT_shallow
        img = reference_image_features(tiny_clip.visual, IMAGES, v0, [None, v1])
        txt = reference_text(tiny_clip, tokenizer, [f"a photo of a {n}." for n in NAMES], m.prompt_learner.ctx,
                             [None, t1])
        assert torch.allclose(m(IMAGES), clip_logits(tiny_clip, img, txt), atol=1e-4)


def test_vpt_matches_reference(tiny_clip, tokenizer):
    m = make(VPTMethod, tiny_clip, tokenizer, "VPT", N_CTX_VISION=4, PROMPT_DEPTH_VISION=2)
    shallow = make(VPTMethod, tiny_clip, tokenizer, "VPT", N_CTX_VISION=4, PROMPT_DEPTH_VISION=1)
    assert list(shallow.learnable_parameters()) == ["image_encoder.VPT"]
    perturb(m)
    with torch.no_grad():
        img = reference_image_features(tiny_clip.visual, IMAGES, m.image_encoder.VPT,
                                       [None, m.image_encoder.transformer.resblocks["1"].VPT_shallow])
        txt = tiny_clip.encode_text(tokenizer([f"a photo of a {n}." for n in NAMES]))
        assert torch.allclose(m(IMAGES), clip_logits(tiny_clip, img, txt), atol=1e-4)


def test_cocoop_matches_upstream_loop(tiny_clip, tokenizer):
    m = make(CoCoOpMethod, tiny_clip, tokenizer, "COCOOP", N_CTX=4)
    perturb(m)
    pl = m.prompt_learner
    with torch.no_grad():
        f = tiny_clip.encode_image(IMAGES)
        fn = F.normalize(f, dim=-1)
        bias = pl.meta_net.linear2(torch.relu(pl.meta_net.linear1(fn)))
        rows = []
        for i in range(2):  # upstream: one image at a time, its own C prompts
            txt = reference_text(tiny_clip, tokenizer, [f"X X X X {n}." for n in NAMES], pl.ctx + bias[i])
            rows.append(tiny_clip.logit_scale.exp() * fn[i] @ F.normalize(txt, dim=-1).t())
        ref = torch.stack(rows)
        assert torch.allclose(m(IMAGES), ref, atol=1e-4)
        m.max_text_batch = 1  # one image per text chunk
        assert torch.allclose(m(IMAGES), ref, atol=1e-4)
        assert m.encode_text().shape == (3, 64)  # the unshifted context


def test_cocoop_loss_is_upstream_cross_entropy(tiny_clip, tokenizer):
    m = make(CoCoOpMethod, tiny_clip, tokenizer, "COCOOP", N_CTX=4)
    labels = torch.tensor([2, 0])
    losses, logits = m.losses(IMAGES, labels)
    assert torch.allclose(losses["cls"], F.cross_entropy(logits, labels))
    losses["cls"].backward()
    assert m.prompt_learner.ctx.grad is not None and m.prompt_learner.meta_net.linear1.weight.grad is not None


# ---------------------------------------------------------------- trainers: frozen encoders, training, checkpoints
class _Split(torch.utils.data.Dataset):
    def __init__(self, n_per_class, seed):
        g = torch.Generator().manual_seed(seed)
        colours = torch.tensor([[1.5, -1.0, -1.0], [-1.0, 1.5, -1.0], [-1.0, -1.0, 1.5]])
        imgs, labels = [], []
        for c in range(3):
            for _ in range(n_per_class):
                img = 0.3 * torch.randn(3, 32, 32, generator=g)
                y, x = torch.randint(0, 8, (2,), generator=g).tolist()
                img[:, y:y + 24, x:x + 24] += colours[c].view(3, 1, 1)
                imgs.append(img)
                labels.append(c)
        self.imgs, self.labels = imgs, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"img": self.imgs[i], "label": self.labels[i], "index": i}


class TinyDM:
    """The few attributes a trainer reads from a DataManager; colour patches are the classes."""

    def __init__(self):
        self.classnames = CLASSES
        self.num_classes = 3
        self.lab2cname = dict(enumerate(CLASSES))
        self.dataset = type("D", (), {"classnames": CLASSES, "num_classes": 3, "lab2cname": self.lab2cname})()
        gen = torch.Generator().manual_seed(0)
        self.train_loader_x = torch.utils.data.DataLoader(_Split(16, 1), batch_size=8, shuffle=True, generator=gen)
        self.val_loader = None
        self.test_loader = torch.utils.data.DataLoader(_Split(20, 2), batch_size=32)


TRAINERS = {
    "VPT": (VPT, {"N_CTX_VISION": 8, "PROMPT_DEPTH_VISION": 2}),
    "IVLP": (IVLP, {"PROMPT_DEPTH_VISION": 2, "PROMPT_DEPTH_TEXT": 2}),
    "MAPLE": (MaPLe, {"PROMPT_DEPTH": 2}),
    "COCOOP": (CoCoOp, {"N_CTX": 4}),
}


def build_trainer(tiny_name, tmp_path, node, epochs=1, lr=0.01, optim="sgd"):
    cls, kw = TRAINERS[node]
    cfg = get_cfg_default()
    cfg.MODEL.BACKBONE.NAME = tiny_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.OPTIM.NAME = optim
    cfg.OPTIM.LR = lr
    cfg.OPTIM.MAX_EPOCH = epochs
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.TRAIN.PRINT_FREQ = 100
    for k, v in kw.items():
        setattr(getattr(cfg.TRAINER, node), k, v)
    torch.manual_seed(0)
    return cls(cfg, dm=TinyDM())


@pytest.mark.parametrize("node", list(TRAINERS))
def test_only_prompts_train(tiny_name, tmp_path, node):
    t = build_trainer(tiny_name, tmp_path, node)
    m = t.model
    learnable = m.learnable_parameters()
    assert not any(p.requires_grad for p in m.clip_model.parameters())
    in_optim = {id(p) for g in t.optim.param_groups for p in g["params"]}
    assert in_optim == {id(p) for p in learnable.values()}
    assert t.method_precision() == "fp16" and t.precision == "fp32"  # upstream's PREC, CPU runs fp32
    expected = {
        "VPT": {"image_encoder.VPT", "image_encoder.transformer.resblocks.1.VPT_shallow"},
        "IVLP": {"prompt_learner.ctx", "image_encoder.VPT", "image_encoder.transformer.resblocks.1.VPT_shallow",
                 "text_prompts.transformer.resblocks.1.VPT_shallow"},
        "MAPLE": {"prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias",
                  "prompt_learner.compound_prompts_text.0", "prompt_learner.compound_prompt_projections.0.weight",
                  "prompt_learner.compound_prompt_projections.0.bias"},
        "COCOOP": {"prompt_learner.ctx", "prompt_learner.meta_net.linear1.weight",
                   "prompt_learner.meta_net.linear1.bias", "prompt_learner.meta_net.linear2.weight",
                   "prompt_learner.meta_net.linear2.bias"},
    }[node]
    assert set(learnable) == expected


UPSTREAM_KEYS = {  # the names upstream's checkpoints use for these tensors
    "VPT": "image_encoder.VPT",
    "IVLP": "text_encoder.transformer.resblocks.1.VPT_shallow",
    "MAPLE": "prompt_learner.compound_prompt_projections.0.weight",
    "COCOOP": "meta_net.linear1.weight",
}


@pytest.mark.parametrize("node", list(TRAINERS))
def test_short_training_raises_accuracy_and_checkpoints_round_trip(tiny_name, tmp_path, node):
    # a random tiny CLIP: vision-only prompts (VPT) learn slowest; each setting is the smallest that learns
    optim, lr, epochs = ("sgd", 0.3, 10) if node == "VPT" else ("adam", 0.01, 6)
    t = build_trainer(tiny_name, tmp_path, node, epochs=epochs, lr=lr, optim=optim)
    before = t.test()
    t.train()
    after = t.last_results["accuracy"]
    logger.info("%s: test accuracy %.1f -> %.1f", node, before, after)
    assert after >= before + 15, (before, after)
    state = t.get_model_state()
    assert UPSTREAM_KEYS[node] in state
    t2 = build_trainer(tiny_name, tmp_path / "other", node)
    t2.load_model(str(tmp_path), epoch=epochs)
    for (k, a), b in zip(t.model.learnable_parameters().items(), t2.model.learnable_parameters().values()):
        assert torch.equal(a, b), k


# ---------------------------------------------------------------- learnable-parameter counts at ViT-B/16
@pytest.fixture(scope="module")
def vit_b16():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval()  # random weights, no download
    for p in model.parameters():
        p.requires_grad_(False)
    return model, open_clip.get_tokenizer("ViT-B-16")


def _count(method, vit_b16, node, **kw):
    model, tok = vit_b16
    cfg = get_cfg_default()
    for k, v in kw.items():
        setattr(getattr(cfg.TRAINER, node), k, v)
    m = method(cfg, ["cat", "dog"], model, tok)
    return sum(p.numel() for p in m.learnable_parameters().values())


def test_learnable_parameter_counts_vit_b16(vit_b16):
    from dapt.trainers.coop import CoOpMethod

    dt, dv, E = 512, 768, 512  # text width, image width, embedding dim of ViT-B/16
    n, J = 2, 9
    # MaPLe (upstream): ctx + proj + (J - 1) deeper text prompts + (J - 1) couplings
    maple_formula = n * dt + (dt * dv + dv) + (J - 1) * n * dt + (J - 1) * (dt * dv + dv)
    maple = _count(MaPLeMethod, vit_b16, "MAPLE", N_CTX=2, PROMPT_DEPTH=9)
    logger.info("MaPLe learnable parameters at ViT-B/16: %d (upstream formula %d; MaPLe paper: 3.55M)",
                maple, maple_formula)
    assert maple == maple_formula == 3_555_072
    assert abs(maple / 1e6 - 3.55) < 0.01  # the paper's "3.55M"

    vpt_deep = _count(VPTMethod, vit_b16, "VPT", N_CTX_VISION=8, PROMPT_DEPTH_VISION=12)
    vpt_shallow = _count(VPTMethod, vit_b16, "VPT", N_CTX_VISION=8, PROMPT_DEPTH_VISION=1)
    assert vpt_deep == 12 * 8 * dv and vpt_shallow == 8 * dv
    ivlp = _count(IVLPMethod, vit_b16, "IVLP", N_CTX_VISION=2, N_CTX_TEXT=2, PROMPT_DEPTH_VISION=12,
                  PROMPT_DEPTH_TEXT=12)
    assert ivlp == 12 * 2 * dv + 12 * 2 * dt
    cocoop = _count(CoCoOpMethod, vit_b16, "COCOOP", N_CTX=4, CTX_INIT="a photo of a")
    assert cocoop == 4 * dt + (E * (E // 16) + E // 16) + ((E // 16) * dt + dt) == 35_360
    coop = _count(CoOpMethod, vit_b16, "COOP", N_CTX=16)
    assert coop == 16 * dt
    logger.info("VPT deep (8 tokens, 12 layers) %d, VPT shallow (8 tokens) %d, IVLP (2+2, depth 12) %d, "
                "CoCoOp (4 ctx) %d, CoOp (16 ctx) %d", vpt_deep, vpt_shallow, ivlp, cocoop, coop)


# ---------------------------------------------------------------- precision and upstream config files
@pytest.mark.parametrize("node", ["VPT", "IVLP", "MAPLE", "COCOOP"])
def test_autocast_follows_fp32_path(tiny_clip, tokenizer, node):
    """Nothing hard-codes a dtype: under autocast (bf16 here, on CPU) the loss is close to fp32's
    and every prompt tensor gets a gradient."""
    method = {"VPT": VPTMethod, "IVLP": IVLPMethod, "MAPLE": MaPLeMethod, "COCOOP": CoCoOpMethod}[node]
    kw = {"VPT": {"PROMPT_DEPTH_VISION": 2}, "IVLP": {"PROMPT_DEPTH_VISION": 2, "PROMPT_DEPTH_TEXT": 2},
          "MAPLE": {"PROMPT_DEPTH": 2}, "COCOOP": {"N_CTX": 4}}[node]
    m = make(method, tiny_clip, tokenizer, node, **kw)
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        ref = m.losses(IMAGES, labels)[0]["cls"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, logits = m.losses(IMAGES, labels)
    assert logits.dtype == torch.bfloat16
    losses["cls"].backward()
    assert abs(float(losses["cls"].detach()) - float(ref)) < 0.1
    assert all(p.grad is not None for p in m.learnable_parameters().values())


def test_upstream_config_files_load():
    from pathlib import Path

    from dapt.config import merge_from_file

    root = Path(__file__).resolve().parent.parent / "configs" / "trainers"
    files = sorted(str(f) for f in root.glob("*/*.yaml"))
    assert len(files) >= 20
    for f in files:
        merge_from_file(get_cfg_default(), f)
    cfg = get_cfg_default()
    merge_from_file(cfg, str(root / "MaPLe" / "vit_b16_c2_ep5_batch4_2ctx.yaml"))
    m = cfg.TRAINER.MAPLE
    assert (m.N_CTX, m.CTX_INIT, m.PREC, m.PROMPT_DEPTH) == (2, "a photo of a", "fp16", 9)
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (0.0035, 5, 4)
    cfg = get_cfg_default()
    merge_from_file(cfg, str(root / "VPT" / "vit_b16_c2_ep5_batch4_4.yaml"))
    assert (cfg.TRAINER.VPT.N_CTX_VISION, cfg.TRAINER.VPT.PROMPT_DEPTH_VISION) == (8, 12)
