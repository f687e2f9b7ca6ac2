#!/usr/bin/env python
"""Pretrain the toy CLIP (``dapt-tiny-vit``) contrastively on captioned objects-on-scenes images.

The pretraining images are rendered on the fly from their own seed stream (not the benchmark's)
and pair every object class with every background uniformly. Three quarters of each batch come in groups of
eight scenes that share background, colour and caption template and differ only in the object's shape
("a yellow star on grass." / "a yellow heart on grass." ...), so the loss rewards telling shapes apart.
The other quarter: random scenes with captions that name the object, its colour and/or background
("a photo of a star.", "a star on sand."), bare backgrounds (half of them with an object-shaped
black hole, like DAPT's background view) captioned "grass", "a photo of sky." ..., and objects on a
flat dark canvas (like DAPT's foreground view). Some captions get a random prefix of filler words
so that the text positions a 16-token learned context pushes the class name to are trained too.

Loss: the standard symmetric CLIP InfoNCE with a learnable temperature. Deterministic from
``--seed`` and ``--threads`` on a CPU (deterministic algorithms; the thread count changes float
summation order, so keep it when reproducing).

    python tools/pretrain_toy_clip.py --out dapt/models/weights/dapt-tiny-vit.compact.safetensors

prints the sha256 of the compact file and the zero-shot accuracies on the default benchmark test
split (objects: "a photo of a {}.", backgrounds: "a photo of {}.").
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dapt.data.synthetic import scenes  # noqa: E402
from dapt.models import toy  # noqa: E402
from dapt.models.model_configs import register_model_configs  # noqa: E402

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FILLERS = ["a", "the", "this", "is", "photo", "picture", "image", "of", "an", "example", "nice", "small", "big",
           "x", "it", "shows", "there", "clear", "good", "one"]
KIND_SCENE, KIND_BACKGROUND, KIND_OBJECT = 0, 1, 2
PRETRAIN_STREAM = 99  # keeps the pretraining images apart from the benchmark's split streams (0, 1, 2)


def random_item(rng: np.random.Generator, size: int, img_seed: int):
    """One pretraining image and its (kind, object, background, colour) record."""
    u = rng.random()
    o = scenes.OBJECTS[int(rng.integers(len(scenes.OBJECTS)))]
    b = scenes.BACKGROUNDS[int(rng.integers(len(scenes.BACKGROUNDS)))]
    if u < 0.6:
        r = scenes.render_scene(o, b, size, img_seed, typical_color_p=0.0)
        return r["image"], (KIND_SCENE, o, b, r["color"])
    if u < 0.8:
        r = scenes.render_scene(o, b, size, img_seed, typical_color_p=0.0)
        img = r["image"].copy()
        if rng.random() < 0.5:  # DAPT's background view: the object cut out
            img[r["mask"]] = 0
        else:
            img = scenes.render_background(b, size, r["background_seed"])
        return img, (KIND_BACKGROUND, None, b, "")
    color = list(scenes.COLORS)[int(rng.integers(len(scenes.COLORS)))]
    color = "white" if color == "black" else color  # visible on the dark canvas
    r = scenes.render_scene(o, b, size, img_seed, color=color)
    canvas = np.zeros_like(r["image"])
    if rng.random() < 0.5:  # flat dark grey instead of black
        canvas[:] = rng.integers(20, 70)
    canvas[r["mask"]] = r["image"][r["mask"]]
    return canvas, (KIND_OBJECT, o, None, color)


GROUP_SIZE = 8
GROUP_TEMPLATES = ["a {c} {o} on {b}.", "a photo of a {c} {o} on {b}.", "a {o} on {b}.", "a photo of a {o}.",
                   "a photo of a {c} {o}.", "a {c} {o}"]


_BG_MEANS = {}


def contrasting_colors(background: str, size: int):
    """The named colours that stand out from a background class's mean colour (as scenes does per image)."""
    if background not in _BG_MEANS:
        _BG_MEANS[background] = np.mean([scenes.render_background(background, size, s).reshape(-1, 3).mean(0)
                                         for s in range(4)], axis=0)
    mean = _BG_MEANS[background]
    return [c for c, rgb in scenes.COLORS.items() if np.linalg.norm(np.asarray(rgb, float) - mean) > scenes._MIN_CONTRAST]


def make_batch(seed: int, step: int, size: int, n: int, group: int = GROUP_SIZE):
    """The images and captions of one step, rendered on the fly (deterministic in seed and step).

    Three quarters of the batch come in groups of ``group`` scenes that share background, colour and
    caption template and differ only in the object's shape (and pose), so the contrastive loss can only
    be lowered by telling shapes apart; the other quarter is random scenes, bare backgrounds and bare
    objects, every colour drawn uniformly (colour never names the class).
    """
    rng = np.random.default_rng([seed, PRETRAIN_STREAM, step])
    rnd = random.Random(f"{seed}-{step}")
    images, captions = [], []
    n_groups = (3 * n) // (4 * group)
    for _ in range(n_groups):
        b = scenes.BACKGROUNDS[int(rng.integers(len(scenes.BACKGROUNDS)))]
        colors = contrasting_colors(b, size)
        c = colors[int(rng.integers(len(colors)))]
        template = rnd.choice(GROUP_TEMPLATES)
        for k in rng.choice(len(scenes.OBJECTS), size=group, replace=False):
            o = scenes.OBJECTS[int(k)]
            r = scenes.render_scene(o, b, size, int(rng.integers(0, 2**31 - 1)), color=c)
            images.append(r["image"])
            captions.append(template.format(o=o, b=b, c=c))
    while len(images) < n:
        img, rec = random_item(rng, size, int(rng.integers(0, 2**31 - 1)))
        images.append(img)
        captions.append(caption(rec, rnd))
    images = np.stack(images)
    if rng.random() < 0.5:
        images = images[:, :, ::-1]  # horizontal flip of the whole batch (captions say nothing of left/right)
    return np.ascontiguousarray(images), captions


def caption(rec, rnd: random.Random) -> str:
    kind, o, b, color = rec
    if kind == KIND_BACKGROUND:
        text = rnd.choice(["{b}", "{b}", "a photo of {b}.", "a photo of the {b}.", "{b} background", "only {b}."])
    elif kind == KIND_OBJECT:
        text = rnd.choice(["a photo of a {o}.", "a {o}", "a {c} {o}", "a photo of a {c} {o}.", "a {o}."])
    else:
        text = rnd.choice([
            "a photo of a {o}.", "a photo of a {o}.", "a {o}", "a photo of a {c} {o}.", "a {c} {o}",
            "a photo of a {o} on {b}.", "a {o} on {b}.", "a {c} {o} on {b}.", "a photo of a {c} {o} on {b}.",
            "{b} with a {o}", "a {o} in front of {b}.",
        ])
    text = text.format(o=o, b=b, c=color)
    if rnd.random() < 0.2:
        text = " ".join(rnd.choice(FILLERS) for _ in range(rnd.randint(1, 22))) + " " + text
    return text


def to_tensor(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_text_truncated(model, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` on the first max(EOT)+1 positions: exact, the text tower is causal."""
    eot = tokens.argmax(dim=-1)
    n = int(eot.max()) + 1
    t = tokens[:, :n]
    x = model.token_embedding(t) + model.positional_embedding[:n]
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), eot]
    return x @ model.text_projection


@torch.no_grad()
def zero_shot(model, tokenizer, images: np.ndarray, labels, names, template: str, batch: int = 256) -> float:
    text = tokenizer([template.format(n) for n in names])
    tf = F.normalize(model.encode_text(text), dim=-1)
    correct = 0
    for s in range(0, len(images), batch):
        f = F.normalize(model.encode_image(to_tensor(images[s:s + batch])), dim=-1)
        pred = (f @ tf.T).argmax(-1)
        correct += int((pred == torch.as_tensor(labels[s:s + batch])).sum())
    return correct / len(images)


def benchmark_eval(model, tokenizer, seed: int = 1, p: float = 0.9) -> dict:
    """Zero-shot accuracy on the test split of the default benchmark generation."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        d = scenes.generate_objects_on_scenes(os.path.join(tmp, "scenes"), seed=seed, p=p, typical_color_p=0.0)
        with open(os.path.join(d, scenes.SPLIT_FILE)) as f:
            test = json.load(f)["test"]
        labels = scenes.read_scene_labels(d)
        imgs = np.stack([np.asarray(Image.open(os.path.join(d, "images", rel)).convert("RGB")) for rel, _, _ in test])
        obj_labels = [lab for _, lab, _ in test]
        bg_labels = [labels[rel]["background_label"] for rel, _, _ in test]
    names = scenes.OBJECTS[:max(obj_labels) + 1]
    return {
        "object_zero_shot": zero_shot(model, tokenizer, imgs, obj_labels, names, "a photo of a {}."),
        "background_zero_shot": zero_shot(model, tokenizer, imgs, bg_labels, scenes.BACKGROUNDS, "a photo of {}."),
        "n_test": len(test),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="dapt/models/weights/dapt-tiny-vit.compact.safetensors", help="compact checkpoint to write")
    ap.add_argument("--full-out", default="", help="also write the full fp32 state dict here")
    ap.add_argument("--init", default="", help="start from this compact checkpoint (a warm start) instead of random weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--token-init-seed", type=int, default=20240601)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=0, help="zero-shot accuracy on the benchmark test split every N steps")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    t0 = time.time()

    import open_clip

    register_model_configs()
    model = open_clip.create_model(toy.TOY_MODEL, pretrained=None)
    tokenizer = open_clip.get_tokenizer(toy.TOY_MODEL)
    std = 0.02
    with torch.no_grad():
        model.token_embedding.weight.copy_(token_init := toy.token_embedding_init(
            *model.token_embedding.weight.shape, seed=args.token_init_seed, std=std))
    del token_init
    if args.init:  # a warm start: its untouched token rows equal the same rule, so the compact form stays valid
        model.load_state_dict(toy.expand_compact(toy.load_compact(args.init)), strict=False)
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size


    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n or n == toy.TOKEN_KEY:
            no_decay.append(p)
        else:
            decay.append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        q = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * q))

    model.train()
    for step in range(args.steps):
        batch, captions = make_batch(args.seed, step, size, args.batch_size)
        x = to_tensor(batch)
        tokens = tokenizer(captions)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        img_f = F.normalize(model.encode_image(x), dim=-1)
        txt_f = F.normalize(encode_text_truncated(model, tokens), dim=-1)
        logits = model.logit_scale.exp() * img_f @ txt_f.T
        target = torch.arange(len(captions))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % args.log_every == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  scale {model.logit_scale.exp().item():.1f}  "
                  f"{time.time() - t0:.0f}s", flush=True)
        if args.eval_every and step % args.eval_every == args.eval_every - 1:
            model.eval()
            print(f"step {step:5d}  {json.dumps(benchmark_eval(model, tokenizer))}", flush=True)
            model.train()
    model.eval()

    compact = toy.compact_state_dict(model.state_dict(), args.token_init_seed, std)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    toy.save_compact(compact, args.out)
    digest = toy.sha256_file(args.out)
    print(f"wrote {args.out}: {os.path.getsize(args.out) / 1e6:.2f} MB, sha256 {digest}, "
          f"{len(compact['token_rows'])} trained token rows; {time.time() - t0:.0f}s", flush=True)
    if args.full_out:
        torch.save(toy.expand_compact(compact), args.full_out)

    if not args.no_eval:
        # evaluate exactly what ships: the expanded compact checkpoint
        model.load_state_dict(toy.expand_compact(compact), strict=False)
        print(json.dumps(benchmark_eval(model, tokenizer)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
