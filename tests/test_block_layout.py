"""Sequence-first block loops and text class chunks change no feature and no gradient.

The references are written out here: the block loops as they were (every block called as a
batch-first module) and open_clip's own encode_image / encode_text.
"""
import pytest
import torch

from dapt.models.blocks import seq_first_ok
from dapt.models.image_encoder import PromptedImageEncoder
from dapt.models.text_encoder import PromptedTextEncoder

TEXTS = ["a photo of a dog.", "a photo of a golden retriever sitting on the grass near a lake.", "x", "sky",
         "a b c d e f", "a photo of a cat.", "car"]


def old_image_loop(visual, images, first, deep):
    """The batch-first loop the image encoder ran before (module calls, prompts replaced by cat)."""
    enc = PromptedImageEncoder(visual)
    x = enc.embed(images)
    n = first.shape[0]
    x = torch.cat([x, first.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x)
    for i, block in enumerate(visual.transformer.resblocks):
        if 0 < i < len(deep) and deep[i] is not None:
            x = torch.cat([x[:, :x.shape[1] - n], deep[i].unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        x = block(x)
    return visual.ln_post(x[:, 0]) @ visual.proj


def old_text_loop(clip, emb, ids, deep, start=1):
    """The batch-first text loop before (exact truncation to max EOT + 1, deep prompts at 1 .. n)."""
    eot = ids.argmax(-1)
    L = max(int(eot.max()) + 1, start + max(p.shape[0] for p in deep if p is not None))
    x = emb[:, :L] + clip.positional_embedding[:L]
    for i, block in enumerate(clip.transformer.resblocks):
        if 0 < i < len(deep) and deep[i] is not None:
            p = deep[i].unsqueeze(0).expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :start], p, x[:, start + p.shape[1]:]], dim=1)
        x = block(x, attn_mask=clip.attn_mask[:L, :L])
    x = clip.ln_final(x)
    return x[torch.arange(x.shape[0]), eot] @ clip.text_projection


def close(a, b, tol=1e-6):
    """Max abs difference within ``tol`` relative to the tensor's scale (at least 1): the fp32 round-off
    of running the same maths with other batch sizes (gradients w.r.t. token embeddings reach ~250)."""
    a, b = a.detach(), b.detach()
    return (a - b).abs().max() <= tol * max(1.0, float(b.abs().max()))


def _grads(out, inputs, seed=0):
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad((out * w).sum(), inputs)


def test_image_seq_first_equals_old_loop_and_open_clip(tiny_clip):
    visual = tiny_clip.visual
    enc = PromptedImageEncoder(visual)
    torch.manual_seed(0)
    images = torch.randn(3, 3, 32, 32)
    first = torch.randn(2, 64, requires_grad=True)
    deep = [None, torch.randn(2, 64, requires_grad=True)]
    assert seq_first_ok(visual.transformer.resblocks[0], torch.zeros(1, requires_grad=True))
    new = enc(images, first, deep)
    ref = old_image_loop(visual, images, first, deep)
    assert torch.allclose(new, ref, atol=1e-6, rtol=0), (new - ref).abs().max()
    for a, b in zip(_grads(new, [first, deep[1]]), _grads(ref, [first, deep[1]])):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()
    # without prompts, with and without autograd: open_clip's own encode_image
    x = images.clone().requires_grad_(True)
    with torch.no_grad():
        plain = tiny_clip.encode_image(images)
    assert torch.allclose(enc(images), plain, atol=1e-6, rtol=0)
    assert torch.allclose(enc(x), plain, atol=1e-5, rtol=0)  # grad path vs fused no-grad kernel (~2e-6)


def test_image_hooks_see_batch_first_tokens(tiny_clip):
    """With a hook on the last block's ln_1 (Grad-CAM), that block runs as a batch-first module."""
    enc = PromptedImageEncoder(tiny_clip.visual)
    first = torch.randn(2, 64, requires_grad=True)
    seen = {}
    h = tiny_clip.visual.transformer.resblocks[-1].ln_1.register_forward_hook(
        lambda m, i, o: seen.update(shape=tuple(o.shape), inp=i[0]))
    try:
        feats, last = enc(torch.randn(3, 3, 32, 32), first, return_last_block_input=True)
    finally:
        h.remove()
    assert seen["shape"] == (3, 1 + 16 + 2, 64)
    assert torch.equal(last, seen["inp"])


@pytest.mark.parametrize("chunk", [0, 2, 3, 100])
def test_text_seq_first_and_chunks_equal_old_loop(tiny_clip, tokenizer, chunk):
    ids = tokenizer(TEXTS)
    enc = PromptedTextEncoder(tiny_clip, chunk_size=chunk)
    torch.manual_seed(1)
    ctx = torch.randn(2, 64, requires_grad=True)
    deep = [None, torch.randn(2, 64, requires_grad=True)]
    base = enc.embed(ids).detach()
    emb = torch.cat([base[:, :1], ctx.unsqueeze(0).expand(len(TEXTS), -1, -1), base[:, 3:]], dim=1)
    new = enc(emb, ids, layer_prompts=deep)
    ref = old_text_loop(tiny_clip, emb, ids, deep)
    # chunks change the matmul batch sizes: fp32 round-off of a few ulps (|features| ~ 3)
    assert close(new, ref), (new - ref).abs().max()
    for a, b in zip(_grads(new, [ctx, deep[1]]), _grads(ref, [ctx, deep[1]])):
        assert close(a, b), (a - b).abs().max()
    with torch.no_grad():  # no-grad chunks, and open_clip's encode_text on plain tokens
        assert torch.allclose(enc.encode_tokens(ids), tiny_clip.encode_text(ids), atol=1e-5, rtol=0)
        # no-grad runs open_clip's fused attention kernel, as before: ~2e-6 from the autograd path
        assert torch.allclose(enc(emb, ids, layer_prompts=deep), ref.detach(), atol=1e-5, rtol=0)


def test_text_chunks_per_prompt_deep_prompts(tiny_clip, tokenizer):
    """Per-prompt (N, n, D) deep prompts are sliced with their chunk."""
    ids = tokenizer(TEXTS)
    torch.manual_seed(2)
    deep = [None, torch.randn(len(TEXTS), 2, 64, requires_grad=True)]
    whole = PromptedTextEncoder(tiny_clip)
    chunked = PromptedTextEncoder(tiny_clip, chunk_size=3)
    emb = whole.embed(ids).detach().requires_grad_(True)
    a = whole(emb, ids, layer_prompts=deep)
    b = chunked(emb, ids, layer_prompts=deep)
    assert close(b, a)
    for ga, gb in zip(_grads(a, [emb, deep[1]]), _grads(b, [emb, deep[1]])):
        assert close(gb, ga), (ga - gb).abs().max()
    # frozen first-layer tokens (background sentences): block 0 then takes open_clip's fused kernel,
    # whose round-off depends on the batch size (~2e-6), with or without chunks
    frozen = emb.detach()
    assert torch.allclose(whole(frozen, ids, layer_prompts=deep), chunked(frozen, ids, layer_prompts=deep), atol=1e-5)


def test_chunk_size_rejects_negative(tiny_clip):
    with pytest.raises(ValueError, match="TEXT_CHUNK_SIZE"):
        PromptedTextEncoder(tiny_clip, chunk_size=-1)


def test_chunk_size_from_config(tiny_name):
    from dapt.config import get_cfg_default
    from dapt.models.clip import build_clip_from_cfg

    cfg = get_cfg_default()
    cfg.MODEL.BACKBONE.NAME = tiny_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.MODEL.TEXT_CHUNK_SIZE = 3
    clip = build_clip_from_cfg(cfg)
    assert PromptedTextEncoder(clip).chunk_size == 3
    assert PromptedTextEncoder(clip, chunk_size=0).chunk_size == 0
