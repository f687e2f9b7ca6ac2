"""Benchmarks that back the performance claims in the README; each prints ratios from one run.

    python tools/benchmark.py --backbone ViT-B/16 --device cpu --what text
    python tools/benchmark.py --backbone ViT-B/16 --device cuda --what all

Weights are random (``pretrained=False``): speed does not depend on their values, and no
download or weight file is needed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def timeit(fn, device, repeat=5, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_text(clip, tokenizer, device, n_prompts, repeat):
    from dapt.models.text_encoder import PromptedTextEncoder

    enc = PromptedTextEncoder(clip)
    names = [f"class name number {i}" for i in range(n_prompts)]
    ids = tokenizer([f"X X X X {n}." for n in names]).to(device)
    base = enc.embed(ids).detach()
    ctx = torch.zeros(4, base.shape[-1], device=device, requires_grad=True)

    def step(truncate):
        def run():
            x = torch.cat([base[:, :1], ctx.unsqueeze(0).expand(len(names), -1, -1), base[:, 5:]], dim=1)
            enc(x, ids, truncate=truncate).sum().backward()
        return run

    full = timeit(step(False), device, repeat)
    cut = timeit(step(True), device, repeat)
    L = int(ids.argmax(-1).max()) + 1
    print(f"text fwd+bwd, {n_prompts} CoOp prompts: full 77 tokens {full * 1e3:.1f} ms, "
          f"truncated to {L} tokens {cut * 1e3:.1f} ms, speed-up x{full / cut:.2f}")


def bench_triplet(clip, device, batch, repeat):
    """One batched pass over (I, I_f, I_b) against three separate passes."""
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(batch, 3, size, size, device=device)
    prompt = torch.zeros(1, device=device, requires_grad=True)

    def one_pass():
        x = torch.cat([images, images * 0.5, images * 0.25]) + prompt
        clip.encode_image(x).sum().backward()

    def three_passes():
        for s in (1.0, 0.5, 0.25):
            clip.encode_image(images * s + prompt).sum().backward()

    a = timeit(three_passes, device, repeat)
    b = timeit(one_pass, device, repeat)
    print(f"image triplet fwd+bwd, batch {batch}: 3 passes {a * 1e3:.1f} ms, one batched pass {b * 1e3:.1f} ms, "
          f"speed-up x{a / b:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="ViT-B/16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--what", default="all", choices=["all", "text", "triplet"])
    p.add_argument("--prompts", type=int, default=100, help="class prompts for the text benchmark")
    p.add_argument("--batch", type=int, default=4, help="images per batch for the triplet benchmark")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    from dapt.models.clip import build_clip, get_tokenizer

    device = torch.device(args.device)
    clip = build_clip(args.backbone, pretrained=False).to(device)
    tok = get_tokenizer(args.backbone)
    print(f"backbone {args.backbone}, device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.what in ("all", "text"):
        bench_text(clip, tok, device, args.prompts, args.repeat)
    if args.what in ("all", "triplet"):
        bench_triplet(clip, device, args.batch, args.repeat)


if __name__ == "__main__":
    main()
