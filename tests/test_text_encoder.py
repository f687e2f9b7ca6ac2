import torch
import torch.nn.functional as F

from dapt.models.text_encoder import PromptedTextEncoder

TEXTS = ["a photo of a dog.", "a photo of a golden retriever sitting on the grass near a lake.", "x", "sky"]


def test_no_prompt_equals_open_clip(tiny_clip, tokenizer):
    ids = tokenizer(TEXTS)
    enc = PromptedTextEncoder(tiny_clip)
    with torch.no_grad():
        ref = tiny_clip.encode_text(ids)
        full = enc.encode_tokens(ids, truncate=False)
        cut = enc.encode_tokens(ids, truncate=True)
    assert torch.allclose(full, ref, atol=1e-5)
    assert torch.allclose(cut, ref, atol=1e-5)


def test_truncation_exact_with_deep_prompts_and_grads(tiny_clip, tokenizer):
    ids = tokenizer(TEXTS)
    enc = PromptedTextEncoder(tiny_clip)
    torch.manual_seed(1)
    deep = [None, torch.randn(2, enc.width, requires_grad=True)]
    emb = enc.embed(ids).detach().requires_grad_(True)
    a = enc(emb, ids, layer_prompts=deep, truncate=True)
    ga = torch.autograd.grad(a.sum(), [emb, deep[1]])
    b = enc(emb, ids, layer_prompts=deep, truncate=False)
    gb = torch.autograd.grad(b.sum(), [emb, deep[1]])
    assert torch.allclose(a, b, atol=1e-5)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-5)


def test_deep_prompt_replaces_tokens(tiny_clip, tokenizer):
    """Layer-1 prompts must equal running block 0, overwriting tokens 1..n, then the rest (hand path)."""
    ids = tokenizer(TEXTS[:2])
    enc = PromptedTextEncoder(tiny_clip)
    p = torch.randn(3, enc.width)
    with torch.no_grad():
        out = enc(enc.embed(ids), ids, layer_prompts=[None, p], truncate=False)
        x = tiny_clip.token_embedding(ids) + tiny_clip.positional_embedding
        blocks = tiny_clip.transformer.resblocks
        x = blocks[0](x, attn_mask=tiny_clip.attn_mask)
        x = x.clone()
        x[:, 1:4] = p
        for blk in blocks[1:]:
            x = blk(x, attn_mask=tiny_clip.attn_mask)
        x = tiny_clip.ln_final(x)
        ref = x[torch.arange(2), ids.argmax(-1)] @ tiny_clip.text_projection
    assert torch.allclose(out, ref, atol=1e-5)
    assert F.cosine_similarity(out, enc.encode_tokens(ids)).min() < 0.9999
