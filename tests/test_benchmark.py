"""tools/benchmark.py on the tiny config: the upstream-layout baseline computes our MaPLe step's loss
and gradients; the ratio / floor arithmetic; one short run prints every row."""
import importlib.util
import subprocess
import sys
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
    # 64 images: 4 Grad-CAM batches of 16 (2 s each) + one 2 s text pass = 10 s, against 16 steps of 4 (5 s each)
    assert bench.refresh_share(2.0, 2.0, 5.0, 16, 4, 64) == 10.0 / 80.0
    calls = []
    out = bench.measure_rounds({"x": lambda: calls.append("x"), "y": lambda: calls.append("y")}, 2,
                               torch.device("cpu"), warmup=1)
    assert calls == ["x", "y"] * 3 and len(out["x"]) == 2  # alternating, warm-up round not recorded


def test_short_run_prints_every_row(tiny_name, capsys):
    bench = _bench()
    bench.main(["--backbone", tiny_name, "--device", "cpu", "--classes", "5", "--batch", "2", "--pairs", "1",
                "--cam-batch", "3"])
    out = capsys.readouterr().out
    for row in ("upstream-layout", "DAPT-S step", "DAPT-G step", "PromptSRC step / MaPLe step", "floor x", "Grad-CAM",
                "refresh / training time",
                "text fwd+bwd", "class texts once per evaluation", "text re-encoded per batch"):
        assert row in out, row


def test_memory_rows_and_gpu_estimate(capsys):
    bench = _bench()
    # 500 MB of weights, 1200 MB resident before the step, 2000 MB peak: 500 + 800
    assert bench.gpu_estimate_mb({"weights_mb": 500.0, "before_mb": 1200.0, "peak_mb": 2000.0}) == 1300.0
    assert bench.current_rss_mb() > 10
    # after a reset the high-water mark follows a 200 MB allocation, and drops back at the next reset; in a
    # fresh process (a long-lived one may serve the allocation from memory it already holds)
    probe = ("import sys, torch; sys.path.insert(0, 'tools'); import benchmark as b; assert b.reset_peak_rss(); "
             "base = b.peak_rss_mb(); x = torch.ones(200 * 2 ** 18); up = b.peak_rss_mb() - base; del x; "
             "b.reset_peak_rss(); print(up, b.peak_rss_mb() - base)")
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    up, after = map(float, r.stdout.split())
    assert up >= 150 and after < 150, (up, after)
    every = ["maple", "upstream", "dapt_s", "dapt_g", "image_pass", "frozen_pass", "bg_text", "cam", "cam_text",
             "nograd_fwd", "text_full", "text_cut", "eval", "eval_cached", "promptsrc"]
    # the children are fresh processes: the shipped toy config, which every process knows
    bench.main(["--backbone", "dapt-tiny-vit", "--device", "cpu", "--classes", "5", "--batch", "2", "--pairs", "1",
                "--memory", "--memory-chunk", "2", "--skip", *every])
    out = capsys.readouterr().out
    for what in ("maple", "dapt-s"):
        row = next(line for line in out.splitlines() if f"peak memory, {what} step, text chunks off / 2" in line)
        assert "CUDA estimate" in row, row

