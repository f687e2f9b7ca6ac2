"""tools/tables.py on hand-made run folders: seed means, HM of dataset-averaged base and novel,
rows printed as differences, missing-seed flags, paper numbers and "not run" rows."""
import csv
import statistics

import pytest
import yaml

from dapt.tools.runs import find_runs
from dapt.tools.tables import Aggregator, build_tables, harmonic_mean, load_paper_numbers, write_tables


def run_dir(root, setting, ds, method, seed, acc, split=""):
    if setting == "base2new":
        phase = "train_base" if split == "base" else "test_new"
        d = root / "base2new" / phase / ds / "shots_16" / method / "cfg" / f"seed{seed}"
    else:
        d = root / "few_shot" / ds / method / "cfg" / "4shots" / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "log.txt").write_text(f"Evaluate on the *val* set\n=> result\n* accuracy: 1.0%\n"
                               f"Evaluate on the *test* set\n=> result\n* total: 10\n* accuracy: {acc}%\n")
    return d


SPEC = {
    "name": "X", "setting": ["few_shot", "base2new"], "seeds": [1, 2, 3], "shots": {"few_shot": [4], "base2new": [16]},
    "datasets": ["a", "b"],
    "methods": [{"name": "CoOp", "trainer": "CoOp", "config": "c.yaml"},
                {"name": "CoOp+DAPT", "trainer": "CoOp", "config": "c.yaml"},
                {"name": "VPT", "not_run": True}],
    "table": {"id": "X", "tables": [{"title": "t", "paper": "T11", "columns": [
        {"label": "4-shot", "setting": "few_shot", "shots": 4},
        {"label": "Base", "setting": "base2new", "shots": 16, "metric": "base"},
        {"label": "Novel", "setting": "base2new", "shots": 16, "metric": "novel"},
        {"label": "HM", "setting": "base2new", "shots": 16, "metric": "hm"}]}]},
}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "out"
    data = {  # method -> dataset -> (few-shot per seed, base per seed, novel per seed)
        "CoOp": {"a": ([60, 62, 64], [80, 82, 81], [60, 58, 59]), "b": ([70, 71, 75], [90, 91, 92], [70, 74, 72])},
        "CoOp+DAPT": {"a": ([65, 66], [83, 84], [62, 61]), "b": ([72, 73], [93, 94], [75, 77])},
    }
    for m, per in data.items():
        for ds, (fs, base, new) in per.items():
            for i, acc in enumerate(fs):
                run_dir(root, "few_shot", ds, m, i + 1, acc)
            for i, (b, n) in enumerate(zip(base, new)):
                run_dir(root, "base2new", ds, m, i + 1, b, "base")
                run_dir(root, "base2new", ds, m, i + 1, n, "new")
    return root, data


def test_cells_and_paper_rows(tree):
    root, data = tree
    runs = find_runs(root)
    assert len(runs) == 30 and all(r.finished and r.setting for r in runs)
    agg = Aggregator(runs)
    mean = statistics.mean
    coop = data["CoOp"]
    c = agg.cell("few_shot", "CoOp", ["a", "b"], "acc", 4, want_seeds=3)
    assert c.mean == pytest.approx(mean([mean(coop["a"][0]), mean(coop["b"][0])]))
    seedwise = [mean([coop["a"][0][s], coop["b"][0][s]]) for s in range(3)]
    assert c.std == pytest.approx(statistics.stdev(seedwise))
    b = mean([mean(coop["a"][1]), mean(coop["b"][1])])
    n = mean([mean(coop["a"][2]), mean(coop["b"][2])])
    hm = agg.cell("base2new", "CoOp", ["a", "b"], "hm", 16)
    assert hm.mean == pytest.approx(harmonic_mean(b, n))  # HM of the averages, not the average of HMs
    per_ds_hm = mean(harmonic_mean(mean(coop[d][1]), mean(coop[d][2])) for d in "ab")
    assert abs(hm.mean - per_ds_hm) > 1e-3

    paper = load_paper_numbers()
    t = build_tables(SPEC, agg, paper)[0]
    recs = {(r["row"], r["column"]): r for r in t.records}
    # CoOp+DAPT is a difference row in the paper (to CoOp): ours too
    dapt = data["CoOp+DAPT"]
    ours_delta = mean([mean(dapt["a"][0]), mean(dapt["b"][0])]) - mean([mean(coop["a"][0]), mean(coop["b"][0])])
    assert float(recs[("CoOp+DAPT", "4-shot")]["ours"]) == pytest.approx(ours_delta, abs=1e-4)
    assert recs[("CoOp+DAPT", "4-shot")]["kind"] == "Δ vs CoOp"
    assert float(recs[("CoOp", "Base")]["paper"]) == paper["T11"]["rows"]["CoOp"][3]
    assert float(recs[("CoOp", "HM")]["difference"]) == pytest.approx(
        harmonic_mean(b, n) - paper["T11"]["rows"]["CoOp"][5], abs=1e-4)
    assert recs[("CoOp+DAPT", "Base")]["seeds"] == 2 and recs[("CoOp+DAPT", "Base")]["expected_seeds"] == 3
    assert recs[("VPT", "4-shot")]["status"] == "not run" and recs[("VPT", "4-shot")]["ours"] == ""
    assert recs[("VPT+DAPT", "4-shot")]["status"] == "not run"  # a paper row with no method in the spec
    md = t.markdown()
    assert "(2/3 seeds)" in md and "| VPT | paper, not run |" in md and "| CoOp+DAPT | ours (Δ vs CoOp) |" in md


def test_write_tables_cli_files(tree, tmp_path):
    root, _ = tree
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "x.yaml").write_text(yaml.safe_dump(SPEC))
    written = write_tables(str(root), sweeps_dir=str(specs))
    assert list(written) == ["X"]
    rows = list(csv.DictReader((root / "tables" / "X.csv").open()))
    assert {r["row"] for r in rows} == {"CoOp", "CoOp+DAPT", "VPT", "VPT+DAPT"}
    summary = (root / "tables" / "summary.md").read_text()
    assert "| few_shot | CoOp | a | 4 |  | 1,2,3 | 62.00 | 2.00 |" in summary
    with pytest.raises(KeyError, match="no such table"):
        write_tables(str(root), sweeps_dir=str(specs), only=["T99"])
