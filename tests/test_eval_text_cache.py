"""Evaluation computes the class text features once per ``test()`` (methods whose texts do not depend
on the image), and the logits equal the per-batch computation they replace."""
import importlib.util
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent


def _load_maker():
    spec = importlib.util.spec_from_file_location("_make_reference_losses", HERE / "make_reference_losses.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


maker = _load_maker()


class Collect:
    """An evaluator stand-in that keeps every batch's logits."""

    def __init__(self):
        self.logits = []

    def reset(self):
        self.logits = []

    def process(self, logits, labels):
        self.logits.append(logits.clone())

    def evaluate(self):
        return {"accuracy": 0.0}


@pytest.mark.parametrize("trainer,variant,dapt", [("CoOp", "none", "paper"), ("VPT", "none", "paper"),
                                                  ("IVLP", "none", "paper"), ("MaPLe", "none", "paper"),
                                                  ("MaPLe", "dapt-s", "official")])
def test_text_features_once_per_evaluation(tiny_name, trainer, variant, dapt):
    tr = maker.build_trainer(tiny_name, trainer, dapt, variant)
    tr.evaluator = Collect()
    loader = tr.dm.test_loader
    assert len(loader) >= 2  # several batches, so a per-batch recomputation would show
    method = tr.model
    tr.model.eval()
    with torch.no_grad():  # the old path: model_inference per batch, text recomputed every time
        expected = [tr.model_inference(b["img"]) for b in loader]
    calls = []
    encode_text = method.encode_text

    def counted():
        calls.append(1)
        return encode_text()

    method.encode_text = counted
    tr.test()
    assert len(calls) == 1
    assert len(tr.evaluator.logits) == len(expected)
    for got, exp in zip(tr.evaluator.logits, expected):
        torch.testing.assert_close(got, exp.float(), rtol=0, atol=0)
    # outside test() nothing is cached: the weights may change between evaluations
    with torch.no_grad():
        tr.model_inference(next(iter(loader))["img"])
    assert len(calls) == 2


def test_cache_dropped_between_evaluations(tiny_name):
    tr = maker.build_trainer(tiny_name, "CoOp", "paper", "none")
    tr.evaluator = Collect()
    tr.test()
    first = torch.cat(tr.evaluator.logits)
    with torch.no_grad():
        ctx = tr.model.prompt_learner.ctx  # a training step between two evaluations
        ctx.add_(3.0 * torch.randn(ctx.shape, generator=torch.Generator().manual_seed(5)))
    tr.test()
    second = torch.cat(tr.evaluator.logits)
    assert (first - second).abs().max() > 1e-3
    tr.model.eval()
    with torch.no_grad():
        fresh = torch.cat([tr.model_inference(b["img"]) for b in tr.dm.test_loader])
    torch.testing.assert_close(second, fresh, rtol=0, atol=0)


def test_text_cache_refuses_gradients(tiny_name):
    tr = maker.build_trainer(tiny_name, "CoOp", "paper", "none")
    with pytest.raises(RuntimeError, match="no_grad"):
        with tr.model.text_cache():
            pass
