import pytest
import torch
import torch.nn.functional as F

from dapt.config import get_cfg_default
from dapt.trainers.coop import CoOpMethod

CLASSES = ["dog", "golden_retriever", "sea lion"]


def make(tiny_clip, tokenizer, **kw):
    cfg = get_cfg_default()
    for k, v in kw.items():
        setattr(cfg.TRAINER.COOP, k, v)
    torch.manual_seed(0)
    return CoOpMethod(cfg, CLASSES, tiny_clip, tokenizer)


def direct_text_features(clip, tokenizer, texts, ctx, ctx_pos):
    """Hand path: open_clip's own transformer call, with ctx written into the token embeddings."""
    ids = tokenizer(texts)
    x = clip.token_embedding(ids).clone()
    for i, start in enumerate(ctx_pos):
        c = ctx[i] if ctx.dim() == 3 else ctx
        x[i, start:start + c.shape[0]] = c
    x = x + clip.positional_embedding
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)
    return x[torch.arange(len(texts)), ids.argmax(-1)] @ clip.text_projection


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_coop_logits_match_direct(tiny_clip, tokenizer, position, csc):
    m = make(tiny_clip, tokenizer, N_CTX=4, CSC=csc, CLASS_TOKEN_POSITION=position)
    names = [c.replace("_", " ") for c in CLASSES]
    ctx = m.prompt_learner.ctx.detach()
    lens = [len(tokenizer.encode(n)) for n in names]
    if position == "end":
        texts = [f"X X X X {n}." for n in names]
        pos = [1] * 3
        feats = direct_text_features(tiny_clip, tokenizer, texts, ctx, pos)
    elif position == "front":
        texts = [f"{n} X X X X." for n in names]
        feats = direct_text_features(tiny_clip, tokenizer, texts, ctx, [1 + k for k in lens])
    else:  # middle: two halves around the class name
        texts = [f"X X {n} X X." for n in names]
        rows = []
        for i, n in enumerate(names):
            c = ctx[i] if ctx.dim() == 3 else ctx
            ids = tokenizer([texts[i]])
            x = tiny_clip.token_embedding(ids).clone()
            x[0, 1:3] = c[:2]
            x[0, 3 + lens[i]:5 + lens[i]] = c[2:]
            x = tiny_clip.ln_final(tiny_clip.transformer(x + tiny_clip.positional_embedding, attn_mask=tiny_clip.attn_mask))
            rows.append(x[0, ids.argmax(-1)[0]] @ tiny_clip.text_projection)
        feats = torch.stack(rows)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        img = tiny_clip.encode_image(images)
        ref = tiny_clip.logit_scale.exp() * F.normalize(img, dim=-1) @ F.normalize(feats, dim=-1).t()
        out = m(images)
    assert out.shape == (2, 3)
    assert torch.allclose(out, ref, atol=1e-4)


def test_ctx_init_uses_word_embeddings(tiny_clip, tokenizer):
    m = make(tiny_clip, tokenizer, CTX_INIT="a photo of a", CSC=True)
    ids = tokenizer(["a photo of a"])
    assert m.prompt_learner.ctx.shape == (4, 64)  # CSC ignored with CTX_INIT, as upstream
    assert torch.equal(m.prompt_learner.ctx.detach(), tiny_clip.token_embedding(ids)[0, 1:5])
    # with the init words as context, CoOp's features equal the plain prompt "a photo of a {c}."
    with torch.no_grad():
        ref = tiny_clip.encode_text(tokenizer([f"a photo of a {c.replace('_', ' ')}." for c in CLASSES]))
        assert torch.allclose(m.encode_text(), ref, atol=1e-5)


def test_only_ctx_learnable(tiny_clip, tokenizer):
    m = make(tiny_clip, tokenizer, N_CTX=16)
    assert list(m.learnable_parameters()) == ["prompt_learner.ctx"]
    assert not any(p.requires_grad for p in tiny_clip.parameters())
    assert torch.std(m.prompt_learner.ctx).item() == pytest.approx(0.02, rel=0.25)


def test_context_for_other_names_matches_class_path(tiny_clip, tokenizer):
    m = make(tiny_clip, tokenizer, N_CTX=4)
    with torch.no_grad():
        a = m.encode_text()
        b = m.encode_text_with_context(CLASSES)
        c = m.encode_texts([f"a clean origami {x}." for x in ["grass", "sky"]])
        d = tiny_clip.encode_text(tokenizer([f"a clean origami {x}." for x in ["grass", "sky"]]))
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(c, d, atol=1e-5)  # CoOp has no deep prompts: whole sentences stay frozen CLIP
    # ... so they are computed once, not at every training step
    sentences = [f"a clean origami {x}." for x in ["grass", "sky"]]
    assert m.encode_texts(sentences) is m.encode_texts(sentences)
    assert not m.encode_texts(sentences).requires_grad
