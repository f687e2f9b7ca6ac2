"""The README's "Adding a method" example, run verbatim: it trains on the testbed for one epoch,
and its extra term is logged, alone and under DAPT."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's 'Adding a method' section should hold one python block"
    return blocks[0]


@pytest.mark.slow
def test_readme_method_trains_and_logs_its_term(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)  # the example names the config files relative to the repository
    namespace = {"__name__": "readme_example"}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    # CoOp-based: no learnable image-side parameters, so DAPT adds L_f and L_b (L_v is skipped)
    for mode, dapt_terms in (("", set()), ("dapt-s", {"fg", "bg"})):
        out = tmp_path / (mode or "alone")
        trainer = namespace["train_kgcoop"](str(out), mode=mode, epochs=1)
        meters = trainer.epoch_meters
        assert {"loss_cls", "loss_kg"} | {f"loss_{t}" for t in dapt_terms} <= set(meters), (mode, list(meters))
        assert meters["loss_kg"].avg > 0
        log = (out / "log.txt").read_text()
        assert re.search(r"loss_kg \d+\.\d+", log), mode
        # the logged term is the method's: W * mean ||t_c/|t_c| - f_c/|f_c|||^2, in [0, 4 W]
        assert 0 < meters["loss_kg"].avg <= 4 * 8.0
