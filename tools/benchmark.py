"""Performance table for the README: ratios measured side by side in one run.

    OMP_WAIT_POLICY=PASSIVE python tools/benchmark.py --backbone ViT-B/16 --device cpu --threads 2 \\
        --classes 37 --pairs 3
    python tools/benchmark.py --backbone ViT-B/16 --device cuda --classes 1000 --prec bf16

Every workload runs once per round, in a fixed order, and each ratio is the median over rounds of
the per-round ratio (A B A B alternation: machine noise hits both sides of a ratio alike). Run
with OpenMP threads waiting passively (``OMP_WAIT_POLICY=PASSIVE``, set by this tool for its own
process when unset, before torch loads): spinning threads otherwise steal the cores the next
workload needs. Weights are random (``pretrained=False``): speed does not depend on their
values. Steps are built from a config through the trainer (``build_trainer(cfg)``) and timed at
``trainer.compute_losses(batch)`` + backward, the unit every method and DAPT implement.

Rows:
- MaPLe step vs the UPSTREAM-LAYOUT step: upstream MaPLe's computation order rewritten here
  (all prompts at 77 tokens, sequence-first attention, separate text and image passes,
  everything recomputed every step); same loss and gradients as our step (tested). Next to it:
  (image pass + cut text) / (image pass + 77-token text), the ratio the text cut alone gives, since
  both steps run the same prompted image pass.
- DAPT-S / DAPT-G step vs MaPLe step, with the FLOOR: (MaPLe step + 2 prompted image passes with
  backward (I_f, I_b) + 1 frozen no-grad pass (pseudo-labels) + 25 prompted background texts with
  backward) / MaPLe step, from pass times measured in the same rounds.
- DAPT-G Grad-CAM refresh of one batch vs one no-grad prompted forward of the same images, and
  the refresh's share of a 16-shot epoch (16 x classes images): per image, Grad-CAM (the class
  texts encoded once per refresh) over the DAPT-G training step.
- PromptSRC step vs MaPLe step (PromptSRC adds a frozen image pass and its L1 / KL terms).
- Evaluation throughput (images/s, no grad; class texts once per evaluation as ``test()`` does,
  and re-encoded per batch as before), text truncation (all classes, fwd+bwd, 77 tokens vs
  cut to the longest prompt).
- Peak memory of one MaPLe / DAPT-S step, each in a fresh subprocess (CPU: max RSS; CUDA:
  max allocated), with and without the text tower in checkpointed class chunks.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

N_BACKGROUND = 25  # paper's background vocabulary size (L_b texts)
SHOTS = 16  # the few-shot epoch the DAPT-G refresh share is stated for


# ------------------------------------------------------------------ building from a config
def make_cfg(backbone: str, classes: int, batch: int, device: str, prec: str, dapt: str = "", chunk: int = 0,
             out_dir: str = "", trainer: str = "MaPLe"):
    from dapt.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.TRAINER.NAME = trainer
    cfg.TRAINER.MAPLE.PREC = prec
    cfg.TRAINER.PROMPTSRC.PREC = prec
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.MODEL.TEXT_CHUNK_SIZE = chunk
    cfg.USE_CUDA = device == "cuda"
    cfg.VERBOSE = False
    cfg.OUTPUT_DIR = out_dir or tempfile.mkdtemp(prefix="dapt-bench-")
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = batch
    if dapt:
        cfg.DAPT.ENABLED = True
        cfg.DAPT.MASK.SOURCE = "precomputed" if dapt == "dapt-s" else "gradcam"
    return cfg


class _NoData(torch.utils.data.Dataset):
    def __len__(self):
        return 0


def make_dm(classes: int):
    names = [f"class name {i}" for i in range(classes)]
    empty = torch.utils.data.DataLoader(_NoData())
    return SimpleNamespace(train_loader_x=empty, val_loader=None, test_loader=empty, classnames=names,
                           num_classes=classes, lab2cname=dict(enumerate(names)),
                           dataset=SimpleNamespace(multi_label=False, train_x=[]))


def build(cfg, classes: int):
    """A trainer built from ``cfg`` (as train.py does), its method in training mode."""
    from dapt.engine.build import build_trainer

    torch.manual_seed(0)
    t = build_trainer(cfg, dm=make_dm(classes))
    if getattr(t.model.text_encoder, "chunk_size", None) != cfg.MODEL.TEXT_CHUNK_SIZE:
        t.model.text_encoder.set_chunking(cfg.MODEL.TEXT_CHUNK_SIZE)  # should a method build its text tower otherwise
    t.model.train()
    return t


def image_size(method) -> int:
    s = method.clip_model.visual.image_size
    return int(s[0] if isinstance(s, (tuple, list)) else s)


def make_batch(method, batch: int, classes: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = image_size(method)
    img = torch.randn(batch, 3, s, s, generator=g)
    mask = torch.zeros(batch, 1, s, s)
    mask[..., s // 4: 3 * s // 4, s // 4: 3 * s // 4] = 1.0  # a centred foreground square
    return {"img": img.to(device), "label": torch.randint(0, classes, (batch,), generator=g).to(device),
            "mask": mask.to(device), "index": torch.arange(batch)}


def step_fn(trainer, batch):
    """One training step's compute: the trainer's losses, summed, backward (no optimiser step)."""
    params = trainer.trainable_parameters()

    def run():
        for p in params:
            p.grad = None
        with trainer.autocast():
            losses, _ = trainer.compute_losses(batch)
            total = sum(losses.values())
        total.backward()
        return total
    return run


# ------------------------------------------------------------------ upstream layout baseline
def _block_lnd(block, x, mask=None):
    from dapt.models.blocks import block_seq_first

    return block_seq_first(block, x, mask)


def upstream_layout_loss(method, images, labels):
    """MaPLe's loss as upstream computes it: every class prompt at the full 77 tokens, the towers
    sequence-first (L, N, D) from the embedding on, deep prompts spliced per layer, text and image
    in separate passes, nothing cached between steps. Needs a MaPLe method (prompt_learner with
    ctx, compound_prompts_text, proj and compound_prompt_projections)."""
    pl = method.prompt_learner
    clip = method.clip_model
    # text: [SOS, ctx, class tokens ..] at 77 tokens
    prompts = torch.cat([pl.token_prefix, pl.ctx.unsqueeze(0).expand(pl.token_prefix.shape[0], -1, -1),
                         pl.token_suffix], dim=1)
    x = (prompts + clip.positional_embedding.to(prompts.dtype)).permute(1, 0, 2)
    n = pl.n_ctx
    deep_text = list(pl.compound_prompts_text)
    for i, block in enumerate(clip.transformer.resblocks):
        if 0 < i <= len(deep_text):
            p = deep_text[i - 1].to(x.dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
            x = torch.cat([x[:1], p, x[1 + n:]], dim=0)
        x = _block_lnd(block, x, clip.attn_mask)
    x = clip.ln_final(x.permute(1, 0, 2))
    text = x[torch.arange(x.shape[0], device=x.device), pl.token_ids.argmax(-1)] @ clip.text_projection
    # image: [CLS, patches] + pos, visual prompts appended, ln_pre, then LND blocks
    v = clip.visual
    y = v.conv1(images.to(v.conv1.weight.dtype))
    y = y.reshape(y.shape[0], y.shape[1], -1).permute(0, 2, 1)
    cls = v.class_embedding.to(y.dtype) + torch.zeros(y.shape[0], 1, y.shape[-1], dtype=y.dtype, device=y.device)
    y = torch.cat([cls, y], dim=1) + v.positional_embedding.to(y.dtype)
    vis = pl.proj(pl.ctx)
    y = torch.cat([y, vis.unsqueeze(0).expand(y.shape[0], -1, -1)], dim=1)
    y = v.ln_pre(y).permute(1, 0, 2)
    deep_vis = [proj(p) for proj, p in zip(pl.compound_prompt_projections, pl.compound_prompts_text)]
    for i, block in enumerate(v.transformer.resblocks):
        if 0 < i <= len(deep_vis):
            p = deep_vis[i - 1].to(y.dtype).unsqueeze(1).expand(-1, y.shape[1], -1)
            y = torch.cat([y[:y.shape[0] - n], p], dim=0)
        y = _block_lnd(block, y)
    image = v.ln_post(y.permute(1, 0, 2)[:, 0]) @ v.proj
    logits = clip.logit_scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()
    return F.cross_entropy(logits, labels)


def upstream_step_fn(trainer, batch):
    params = trainer.trainable_parameters()

    def run():
        for p in params:
            p.grad = None
        with trainer.autocast():
            loss = upstream_layout_loss(trainer.model, batch["img"], batch["label"])
        loss.backward()
        return loss
    return run


# ------------------------------------------------------------------ measuring
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_rounds(workloads, rounds: int, device, warmup: int = 1, verbose: bool = False):
    """Run every workload once per round (in order), ``rounds`` times after ``warmup`` rounds;
    -> {name: [seconds per round]}."""
    for _ in range(warmup):
        for fn in workloads.values():
            fn()
    times = {k: [] for k in workloads}
    for _ in range(rounds):
        for name, fn in workloads.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
            if verbose:
                print(f"round {len(times[name])}: {name} {times[name][-1]:.3f} s", file=sys.stderr, flush=True)
    return times


def paired_ratio(times, a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b) measured in the same round."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def floor_ratio(step: float, image_pass: float, frozen_pass: float, bg_text: float) -> float:
    """DAPT's floor over the method step: the extra passes DAPT cannot avoid, from pass times."""
    return (step + 2 * image_pass + frozen_pass + bg_text) / step


def refresh_share(cam: float, cam_text: float, step: float, cam_batch: int, batch: int, images: int) -> float:
    """DAPT-G's per-epoch refresh over the epoch's training time: ``images / cam_batch`` Grad-CAM
    batches plus one class-text pass, against ``images / batch`` training steps."""
    return (cam * images / cam_batch + cam_text) / (step * images / batch)


def paired_floor(times, step: str = "maple") -> float:
    return statistics.median(floor_ratio(s, i, f, t) for s, i, f, t in
                             zip(times[step], times["image_pass"], times["frozen_pass"], times["bg_text"]))


# ------------------------------------------------------------------ peak memory (child process)
def child_peak(args) -> dict:
    """One step in this (fresh) process: resident memory before it and the peak during it (the
    high-water mark is reset before the step; where it cannot be, the building's peak counts too,
    which overstates the step's: a conservative bound)."""
    device = torch.device(args.device)
    cfg = make_cfg(args.backbone, args.classes, args.batch, args.device, args.prec,
                   dapt="" if args.child_peak == "maple" else args.child_peak, chunk=args.text_chunk)
    t = build(cfg, args.classes)
    batch = make_batch(t.model, args.batch, args.classes, device)
    run = step_fn(t, batch)
    tensors = list(t.model.parameters()) + list(t.model.buffers())
    weights_mb = sum(x.numel() * x.element_size() for x in tensors) / 2 ** 20
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return {"before_mb": before / 2 ** 20, "peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20,
                "weights_mb": weights_mb}
    reset = reset_peak_rss()  # the building's high-water mark is not the step's
    before = current_rss_mb()
    run()
    return {"before_mb": before, "peak_mb": peak_rss_mb(), "weights_mb": weights_mb, "peak_reset": reset}


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    raise ValueError(field)


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux /proc)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """This process's resident high-water mark (Linux VmHWM: unlike ``ru_maxrss``, which a child
    inherits from the parent it was forked from, it starts afresh with the exec'd program)."""
    return _status_mb("VmHWM")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, /proc/self/clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def gpu_estimate_mb(peak: dict) -> float:
    """A CUDA step's allocated peak estimated from a CPU measurement: the model's tensors plus what
    the step added to the process's peak (activations, gradients, temporaries), at the same precision.
    The CUDA context (a few hundred MB, not counted by ``max_memory_allocated``) comes on top."""
    return peak["weights_mb"] + max(0.0, peak["peak_mb"] - peak["before_mb"])


def peak_in_subprocess(args, what: str, chunk: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child-peak", what, "--text-chunk", str(chunk),
           "--backbone", args.backbone, "--device", args.device, "--classes", str(args.classes),
           "--batch", str(args.batch), "--prec", args.prec, "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"peak-memory child failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the table
def run_benchmark(args) -> list:
    """-> rows (label, value, note); prints them as a table."""
    device = torch.device(args.device)
    C, B = args.classes, args.batch
    maple = build(make_cfg(args.backbone, C, B, args.device, args.prec), C)
    dapt_s = build(make_cfg(args.backbone, C, B, args.device, args.prec, dapt="dapt-s"), C)
    dapt_g = build(make_cfg(args.backbone, C, B, args.device, args.prec, dapt="dapt-g"), C)
    for t in (dapt_s, dapt_g):  # same random prompts as the MaPLe trainer
        t.model.load_state_dict(maple.model.state_dict())
    promptsrc = build(make_cfg(args.backbone, C, B, args.device, args.prec, trainer="PromptSRC"), C) \
        if "promptsrc" not in args.skip else None
    m = maple.model
    batch = make_batch(m, B, C, device)
    images = batch["img"]
    bg_texts = [f"a clean origami background {i}." for i in range(N_BACKGROUND)]

    def image_pass():
        with maple.autocast():
            out = m.encode_image(images)
        out.float().sum().backward()

    def frozen_pass():
        with torch.no_grad(), maple.autocast():
            m.clip_model.encode_image(images)

    def bg_text():
        with maple.autocast():
            out = m.encode_texts(bg_texts)
        if out.requires_grad:
            out.float().sum().backward()

    from dapt.decouple.gradcam import GradCamMasker

    masker = GradCamMasker()
    gm = dapt_g.model

    with torch.no_grad():
        cam_text = gm.encode_text()

    # the refresh runs in batches of DAPT.CAM.BATCH_SIZE (--cam-batch), not the training batch
    cam_batch = make_batch(m, args.cam_batch, C, device, seed=1)
    cam_images, cam_labels = cam_batch["img"], cam_batch["label"]

    def cam():  # one batch of the refresh: the class texts are encoded once per refresh (cam_text)
        masker(gm, cam_images, cam_labels, text_features=cam_text)

    def cam_text_pass():  # that once-per-refresh text pass
        with torch.no_grad():
            gm.encode_text()

    def nograd_forward():
        with torch.no_grad(), dapt_g.autocast():
            gm.encode_image(cam_images)

    pl = m.prompt_learner

    def text_fn(truncate):
        def run():
            with maple.autocast():
                out = m.text_encoder(pl(), pl.token_ids, layer_prompts=m.text_layer_prompts(), truncate=truncate)
            out.float().sum().backward()
        return run

    def evaluate():  # the text re-encoded for every batch (as before the per-evaluation cache)
        with torch.no_grad(), maple.autocast():
            m.logits(m.encode_image(images), m.encode_text())

    with torch.no_grad(), maple.autocast():
        eval_text = m.encode_text()

    def evaluate_cached():  # a batch of test(): the class texts are computed once per evaluation
        with torch.no_grad(), maple.autocast():
            m.logits(m.encode_image(images), eval_text)

    workloads = {"maple": step_fn(maple, batch), "upstream": upstream_step_fn(maple, batch),
                 "dapt_s": step_fn(dapt_s, batch), "dapt_g": step_fn(dapt_g, batch), "image_pass": image_pass, "frozen_pass": frozen_pass,
                 "bg_text": bg_text, "cam": cam, "cam_text": cam_text_pass, "nograd_fwd": nograd_forward,
                 "text_full": text_fn(False),
                 "text_cut": text_fn(True), "eval": evaluate, "eval_cached": evaluate_cached}
    if promptsrc is not None:
        workloads["promptsrc"] = step_fn(promptsrc, batch)
    if args.skip:
        workloads = {k: v for k, v in workloads.items() if k not in args.skip}
    times = measure_rounds(workloads, args.pairs, device, warmup=args.warmup, verbose=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []

    def have(*names):
        return all(n in times for n in names)

    if have("maple", "upstream"):
        note = f"{med['maple']:.3f} s vs {med['upstream']:.3f} s"
        if have("image_pass", "text_cut", "text_full"):
            # the same image pass in both; only the text length differs: what the text cut alone can give
            bound = statistics.median((i + c) / (i + f) for i, c, f in
                                      zip(times["image_pass"], times["text_cut"], times["text_full"]))
            note += f"; image pass + cut text / image pass + 77-token text: x{bound:.2f}"
        rows.append(("MaPLe step / upstream-layout MaPLe step", f"x{paired_ratio(times, 'maple', 'upstream'):.2f}", note))
    for name, label, ref in (("dapt_s", "DAPT-S", "maple"), ("dapt_g", "DAPT-G", "maple")):
        if have(name, ref):
            note = f"{med[name]:.3f} s vs {med[ref]:.3f} s"
            if have("image_pass", "frozen_pass", "bg_text"):
                note += f"; floor x{paired_floor(times, ref):.2f}"
            rows.append((f"{label} step / MaPLe step", f"x{paired_ratio(times, name, ref):.2f}", note))
    if have("promptsrc", "maple"):
        rows.append(("PromptSRC step / MaPLe step", f"x{paired_ratio(times, 'promptsrc', 'maple'):.2f}",
                     f"{med['promptsrc']:.3f} s vs {med['maple']:.3f} s"))
    if have("image_pass", "frozen_pass", "bg_text"):
        rows.append(("floor passes: prompted image fwd+bwd / frozen fwd / 25 bg texts fwd+bwd", "",
                     f"{med['image_pass']:.3f} / {med['frozen_pass']:.3f} / {med['bg_text']:.3f} s"))
    if have("cam", "nograd_fwd"):
        rows.append(("DAPT-G Grad-CAM of a batch / no-grad forward of it", f"x{paired_ratio(times, 'cam', 'nograd_fwd'):.2f}",
                     f"{med['cam']:.3f} s vs {med['nograd_fwd']:.3f} s ({args.cam_batch} images)"))
    if have("cam", "cam_text", "dapt_g"):
        # the refresh of a 16-shot epoch (N = 16 * C images), paired per round
        n = SHOTS * C
        share = statistics.median(refresh_share(c, t, g, args.cam_batch, B, n) for c, t, g in
                                  zip(times["cam"], times["cam_text"], times["dapt_g"]))
        rows.append((f"DAPT-G refresh / training time of a {SHOTS}-shot epoch ({n} images)", f"{100 * share:.1f}%",
                     f"Grad-CAM {med['cam']:.3f} s per {args.cam_batch} images + class texts {med['cam_text']:.3f} s "
                     f"per refresh, vs DAPT-G step {med['dapt_g']:.3f} s per {B} images"))
    if have("text_full", "text_cut"):
        L = int(pl.token_ids.argmax(-1).max()) + 1
        rows.append((f"text fwd+bwd, {C} classes: 77 tokens / cut to {L}", f"x{paired_ratio(times, 'text_full', 'text_cut'):.2f}",
                     f"{med['text_full']:.3f} s vs {med['text_cut']:.3f} s"))
    if have("eval_cached"):
        rows.append(("evaluation throughput (no grad, class texts once per evaluation)",
                     f"{B / med['eval_cached']:.1f} img/s", f"{med['eval_cached']:.3f} s per batch of {B}"))
    if have("eval"):
        rows.append(("evaluation throughput (no grad, text re-encoded per batch)", f"{B / med['eval']:.1f} img/s",
                     f"{med['eval']:.3f} s per batch of {B}"))
    if args.memory:
        chunk = args.memory_chunk
        for what in ("maple", "dapt-s"):
            off = peak_in_subprocess(args, what, 0)
            on = peak_in_subprocess(args, what, chunk)
            note = f"{off['peak_mb']:.0f} MB (before the step {off['before_mb']:.0f}) vs {on['peak_mb']:.0f} MB"
            if args.device == "cpu":
                note += (f"; CUDA estimate {gpu_estimate_mb(off) / 1024:.1f} GB vs {gpu_estimate_mb(on) / 1024:.1f} GB "
                         f"(weights {off['weights_mb']:.0f} MB + the step's extra peak)")
            rows.append((f"peak memory, {what} step, text chunks off / {chunk}", f"x{on['peak_mb'] / off['peak_mb']:.2f}",
                         note))
    return rows


def print_table(rows, args) -> None:
    print(f"backbone {args.backbone}, device {args.device}, prec {args.prec}, {args.classes} classes, batch "
          f"{args.batch}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, {args.pairs} rounds (median of per-round ratios)")
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"| {'measure'.ljust(w)} | ratio | times |")
    print(f"|{'-' * (w + 2)}|-------|-------|")
    for label, ratio, note in rows:
        print(f"| {label.ljust(w)} | {ratio} | {note} |")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="ViT-B/16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--prec", default="fp32", choices=["fp32", "fp16", "amp", "bf16"],
                   help="TRAINER.MAPLE.PREC (autocast on CUDA only; CPU runs fp32)")
    p.add_argument("--classes", type=int, default=37, help="class count (37 = Oxford Pets, 1000 = ImageNet)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--cam-batch", type=int, default=50,
                   help="images per Grad-CAM batch (DAPT.CAM.BATCH_SIZE, default 50 as the refresh runs)")
    p.add_argument("--pairs", type=int, default=3, help="measured rounds (after one warm-up round)")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--memory", action="store_true", help="also measure peak memory in fresh subprocesses")
    p.add_argument("--memory-chunk", type=int, default=100, help="MODEL.TEXT_CHUNK_SIZE for the chunked memory run")
    p.add_argument("--skip", nargs="*", default=[], help="workloads to leave out (e.g. upstream text_full)")
    p.add_argument("--child-peak", default="", help=argparse.SUPPRESS)
    p.add_argument("--text-chunk", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_peak:
        print(json.dumps(child_peak(args)))
        return
    print_table(run_benchmark(args), args)


if __name__ == "__main__":
    main()
