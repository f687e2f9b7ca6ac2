"""Nothing moves: one training step of CoOp / VPT / IVLP / MaPLe, without DAPT, with DAPT-S and with
DAPT-G, under the paper's and the official DAPT config, equals (within 1e-6) the loss terms and
prompt gradients that the code computed before the architecture redesign (tests/data/reference_losses.pt,
written once by tests/make_reference_losses.py and never regenerated)."""
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
REF = torch.load(HERE / "data" / "reference_losses.pt", weights_only=True)


def close(actual, expected, what):
    assert actual.shape == expected.shape, what
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("trainer", list(maker.METHODS))
def test_step_matches_reference(tiny_name, trainer):
    torch.set_num_threads(1)
    for variant, dapt, epoch in maker.CASES:
        key = maker.case_key(trainer, variant, dapt, epoch)
        ref = REF[key]
        got = maker.step(maker.build_trainer(tiny_name, trainer, dapt, variant), variant, epoch)
        assert set(got["terms"]) == set(ref["terms"]), key
        for name, value in ref["terms"].items():
            close(got["terms"][name], value, f"{key} term {name}")
        close(got["total"], ref["total"], f"{key} total")
        close(got["logits"], ref["logits"], f"{key} logits")
        close(got["eval_logits"], ref["eval_logits"], f"{key} eval logits")
        assert list(got["grads"]) == list(ref["grads"]), key
        for name, g in ref["grads"].items():
            close(got["grads"][name], g, f"{key} grad {name}")
        if "masks" in ref:
            close(got["masks"], ref["masks"], f"{key} masks")


def test_reference_covers_every_case():
    keys = {maker.case_key(t, v, d, e) for t in maker.METHODS for v, d, e in maker.CASES}
    assert set(REF) == keys
    # the reference is not degenerate: DAPT terms present, gradients non-zero
    assert {"fg", "bg", "triplet"} <= set(REF["MaPLe/dapt-s/paper/epoch0"]["terms"])
    assert all(float(g.abs().sum()) > 0 for g in REF["MaPLe/dapt-g/paper/epoch0"]["grads"].values())
