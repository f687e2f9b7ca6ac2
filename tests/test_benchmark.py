"""tools/benchmark.py on the tiny config: the upstream-layout baseline computes our MaPLe step's loss
and gradients; the ratio / floor arithmetic; one short run prints every row."""
import importlib.util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("dapt_benchmark", ROOT / "tools" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_upstream_layout_equals_our_maple_step(tiny_name):
    bench = _bench()
    cfg = bench.make_cfg(tiny_name, 5, 3, "cpu", "fp32")
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 2  # the tiny towers have 2 blocks
    t = bench.build(cfg, 5)
    t.model.text_encoder.set_chunking(0)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # prompts away from their initialisation; deep prompts matter
        for p in t.model.learnable_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    batch = bench.make_batch(t.model, 3, 5, torch.device("cpu"), seed=1)
    params = t.trainable_parameters()
    assert len(params) >= 4
    ours = bench.step_fn(t, batch)()
    g_ours = [p.grad.clone() for p in params]
    theirs = bench.upstream_step_fn(t, batch)()
    g_theirs = [p.grad.clone() for p in params]
    assert abs(float(ours) - float(theirs)) < 1e-5
    for a, b in zip(g_ours, g_theirs):
        assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()
        assert b.abs().sum() > 0


def test_ratio_and_floor_arithmetic():
    bench = _bench()
    times = {"a": [2.0, 4.0, 9.0], "b": [1.0, 1.0, 3.0]}  # per-round ratios 2, 4, 3 -> median 3
    assert bench.paired_ratio(times, "a", "b") == 3.0
    assert bench.floor_ratio(2.0, 0.5, 0.25, 0.25) == 1.75
    t = {"maple": [2.0, 4.0], "image_pass": [0.5, 0.5], "frozen_pass": [0.25, 1.0], "bg_text": [0.25, 1.0]}
    assert bench.paired_floor(t) == (1.75 + 1.75) / 2
    # 64 images in batches of 4: 16 Grad-CAM batches of 0.5 s + one 2 s text pass = 10 s, against 16 steps of 5 s
    assert bench.refresh_share(0.5, 2.0, 5.0, 4, 64) == 10.0 / 80.0
    calls = []
    out = bench.measure_rounds({"x": lambda: calls.append("x"), "y": lambda: calls.append("y")}, 2,
                               torch.device("cpu"), warmup=1)
    assert calls == ["x", "y"] * 3 and len(out["x"]) == 2  # alternating, warm-up round not recorded


def test_short_run_prints_every_row(tiny_name, capsys):
    bench = _bench()
    bench.main(["--backbone", tiny_name, "--device", "cpu", "--classes", "5", "--batch", "2", "--pairs", "1"])
    out = capsys.readouterr().out
    for row in ("upstream-layout", "DAPT-S step", "DAPT-G step", "PromptSRC step / MaPLe step", "floor x", "Grad-CAM",
                "refresh / training time",
                "text fwd+bwd", "class texts once per evaluation", "text re-encoded per batch"):
        assert row in out, row
