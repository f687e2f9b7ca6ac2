import math

import pytest
import torch
import torch.nn.functional as F

from dapt.models.image_encoder import PromptedImageEncoder


def _attention_seq_first(attn, x):
    """Multi-head self-attention written out on a (L, N, D) sequence from the module's weights."""
    L, N, D = x.shape
    h = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)

    def heads(t):  # (L, N, D) -> (N, h, L, D/h)
        return t.reshape(L, N, h, D // h).permute(1, 2, 0, 3)

    q, k, v = heads(q), heads(k), heads(v)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // h), dim=-1)
    out = (w @ v).permute(2, 0, 1, 3).reshape(L, N, D)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def reference_image_features(visual, images, first=None, deep=None):
    """Upstream's order, sequence-first: [CLS, patches] + pos, append prompts, ln_pre, then per block
    drop the last n tokens and append that block's prompts (blocks >= 1), CLS -> ln_post -> proj."""
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    n = 0
    if first is not None:
        n = first.shape[0]
        x = torch.cat([x, first.expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x).permute(1, 0, 2)  # LND
    for i, blk in enumerate(visual.transformer.resblocks):
        if deep is not None and 0 < i < len(deep) and deep[i] is not None:
            x = torch.cat([x[:x.shape[0] - n], deep[i].unsqueeze(1).expand(-1, x.shape[1], -1)], dim=0)
        x = x + _attention_seq_first(blk.attn, blk.ln_1(x))
        x = x + blk.mlp(blk.ln_2(x))
    x = x.permute(1, 0, 2)
    return visual.ln_post(x[:, 0]) @ visual.proj


@pytest.fixture()
def encoder(tiny_clip):
    return PromptedImageEncoder(tiny_clip.visual)


def test_no_prompts_equals_open_clip(tiny_clip, encoder):
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = tiny_clip.encode_image(images)
        assert torch.allclose(encoder(images), ref, atol=1e-5)
        assert torch.allclose(encoder(images, prompts=torch.zeros(0, 64)), ref, atol=1e-5)
        assert torch.allclose(reference_image_features(tiny_clip.visual, images), ref, atol=1e-5)
    assert not list(encoder.parameters(recurse=False))


def test_shallow_and_deep_prompts_match_reference(tiny_clip, encoder):
    torch.manual_seed(1)
    images = torch.randn(2, 3, 32, 32)
    first = torch.randn(3, 64)
    deep = [None, torch.randn(3, 64)]
    with torch.no_grad():
        out = encoder(images, first, deep)
        shallow = encoder(images, first)
        assert torch.allclose(out, reference_image_features(tiny_clip.visual, images, first, deep), atol=1e-5)
        assert torch.allclose(shallow, reference_image_features(tiny_clip.visual, images, first), atol=1e-5)
        assert not torch.allclose(out, shallow, atol=1e-3)
        assert not torch.allclose(shallow, tiny_clip.encode_image(images), atol=1e-3)


def test_per_sample_prompts_equal_one_at_a_time(encoder):
    torch.manual_seed(2)
    images = torch.randn(3, 3, 32, 32)
    first = torch.randn(3, 2, 64)
    deep = [None, torch.randn(3, 2, 64)]
    with torch.no_grad():
        batched = encoder(images, first, deep)
        single = torch.cat([encoder(images[i:i + 1], first[i], [None, deep[1][i]]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_last_block_input_and_layout(tiny_clip, encoder):
    torch.manual_seed(3)
    images = torch.randn(2, 3, 32, 32)
    first = torch.randn(2, 64)
    seen = {}
    hook = tiny_clip.visual.transformer.resblocks[-1].ln_1.register_forward_hook(
        lambda mod, inp, out: seen.update(inp=inp[0], out=out))
    try:
        with torch.no_grad():
            feats, act = encoder(images, first, return_last_block_input=True)
    finally:
        hook.remove()
    n_patches = (32 // 8) ** 2
    assert act.shape == (2, 1 + n_patches + 2, 64)
    assert torch.equal(act, seen["inp"])  # Grad-CAM's hook sees the same tokens
    assert feats.shape == (2, 64)
    # the patch tokens sit at 1 .. 1 + P, right after CLS, with their positional embedding
    with torch.no_grad():
        x0 = encoder.embed(images)
    assert torch.allclose(x0[:, 1:1 + n_patches], (tiny_clip.visual.conv1(images).flatten(2).transpose(1, 2)
                                                   + tiny_clip.visual.positional_embedding[1:]), atol=1e-6)


def test_gradients_reach_prompts_only(tiny_clip, encoder):
    first = torch.randn(2, 64, requires_grad=True)
    deep = [None, torch.randn(2, 64, requires_grad=True)]
    encoder(torch.randn(2, 3, 32, 32), first, deep).sum().backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert deep[1].grad is not None and deep[1].grad.abs().sum() > 0
    assert not any(p.requires_grad for p in tiny_clip.parameters())


def test_errors(encoder):
    with pytest.raises(ValueError, match="patches"):
        encoder(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="deep prompt"):
        encoder(torch.randn(1, 3, 32, 32), torch.randn(2, 64), [None, torch.randn(3, 64)])
