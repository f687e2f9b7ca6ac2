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


# ------------------------------------------------------------------ correlated test, gap, mask IoU
def scenes_run(root, setting, ds, method, seed, acc, corr=None, split="", ious=None):
    """A run folder whose final test also logs correlated_accuracy (the objects-on-scenes block) and,
    optionally, mask_quality.json (one entry per epoch, in that order)."""
    import json

    if setting == "base2new":
        phase = "train_base" if split == "base" else "test_new"
        d = root / "base2new" / phase / ds / "shots_16" / method / "cfg" / f"seed{seed}"
    else:
        d = root / "few_shot" / ds / method / "cfg" / "8shots" / f"seed{seed}"
    d.mkdir(parents=True)
    block = f"* accuracy: {acc}%\n* error: {100 - acc}%\n* macro_f1: 1.0%\n"
    if corr is not None:
        block += f"* correlated_accuracy: {corr}%\n"
    (d / "log.txt").write_text(f"Evaluate on the *val* set\n=> result\n* accuracy: 1.0%\n* correlated_accuracy: 2.0%\n"
                               f"Evaluate on the *test* set\n=> result\n* total: 10\n* correct: 5\n{block}"
                               "Elapsed: 0:00:07\n")
    if ious is not None:
        (d / "mask_quality.json").write_text(json.dumps(
            [{"epoch": e + 1, "iou": v, "fg_fraction": 0.1, "gt_fg_fraction": 0.17, "source": "gradcam"}
             for e, v in enumerate(ious)]))
    return d


SCENES_SPEC = {
    "name": "S", "setting": ["few_shot", "base2new"], "seeds": [1, 2, 3], "shots": {"few_shot": [8], "base2new": [16]},
    "datasets": [{"name": "p5", "label": "p = 0.5"}, {"name": "p9", "label": "p = 0.9"}],
    "methods": [{"name": "M", "trainer": "MaPLe", "config": "c.yaml"},
                {"name": "G", "trainer": "MaPLe", "config": "c.yaml", "mode": "dapt-g"},
                {"name": "Old", "trainer": "MaPLe", "config": "c.yaml"}],
    "table": {"id": "S", "digits": 1, "rows": [{"label": "MaPLe", "method": "M"}, {"label": "DAPT-G", "method": "G"},
                                               {"label": "old runs", "method": "Old"}],
              "tables": [{"title": "fs", "setting": "few_shot", "columns_from": "datasets",
                          "metric": ["acc", "correlated_accuracy", "gap"],
                          "metric_labels": {"acc": "decorr.", "correlated_accuracy": "corr."}},
                         {"title": "b2n", "setting": "base2new", "columns_from": "datasets",
                          "metric": ["hm", "correlated_hm", "hm_gap"]},
                         {"title": "masks", "setting": "few_shot", "columns_from": "datasets", "metric": "mask_iou",
                          "digits": 3, "rows": ["G"]}]},
}


def test_correlated_accuracy_gap_and_mask_iou(tmp_path):
    root = tmp_path / "out"
    acc = {("M", "p9"): [70, 72, 71], ("G", "p9"): [60, 64, 65], ("M", "p5"): [75, 76, 77], ("G", "p5"): [74, 70, 72]}
    corr = {("M", "p9"): [90, 95, 91], ("G", "p9"): [80, 81, 88], ("M", "p5"): [76, 80, 77], ("G", "p5"): [74, 75, 71]}
    ious = {("G", "p9"): [[0.1, 0.3], [0.2, 0.25], [0.4, 0.05]], ("G", "p5"): [[0.5], [0.6], [0.7]]}
    for key, accs in acc.items():
        for s, a in enumerate(accs):
            iou = ious[key][s] if key in ious else None
            scenes_run(root, "few_shot", key[1], key[0], s + 1, a, corr[key][s], ious=iou)
            # base-to-novel: base = acc + 10, novel = acc - 10, correlated ones + 5
            scenes_run(root, "base2new", key[1], key[0], s + 1, a + 10, corr[key][s] + 5, "base", ious=iou)
            scenes_run(root, "base2new", key[1], key[0], s + 1, a - 10, corr[key][s] - 5, "new")
    for s in (1, 2):  # runs of a version without the correlated test set
        scenes_run(root, "few_shot", "p9", "Old", s, 50.0 + s)
    runs = find_runs(root)
    by_path = {str(r.path.relative_to(root)): r for r in runs}
    g9 = by_path["few_shot/p9/G/cfg/8shots/seed1"]
    assert g9.results == {"accuracy": 60.0, "error": 40.0, "macro_f1": 1.0, "correlated_accuracy": 80.0}
    assert g9.extra["mask_iou"] == 0.3  # the last epoch's, not the best or the mean
    assert "mask_iou" not in by_path["few_shot/p9/M/cfg/8shots/seed1"].extra

    agg = Aggregator(runs)
    mean, stdev = statistics.mean, statistics.stdev
    gaps = [c - a for c, a in zip(corr[("G", "p9")], acc[("G", "p9")])]
    c = agg.cell("few_shot", "G", ["p9"], "gap", 8, want_seeds=3)
    assert c.mean == pytest.approx(mean(gaps)) and c.std == pytest.approx(stdev(gaps)) and c.seeds == 3
    c = agg.cell("few_shot", "G", ["p9"], "correlated_accuracy", 8)
    assert c.mean == pytest.approx(mean(corr[("G", "p9")])) and c.std == pytest.approx(stdev(corr[("G", "p9")]))
    c = agg.cell("few_shot", "G", ["p9"], "mask_iou", 8)
    assert c.mean == pytest.approx(mean([0.3, 0.25, 0.05])) and c.std == pytest.approx(stdev([0.3, 0.25, 0.05]))
    hm = harmonic_mean(mean(a + 10 for a in acc[("M", "p5")]), mean(a - 10 for a in acc[("M", "p5")]))
    chm = harmonic_mean(mean(c + 5 for c in corr[("M", "p5")]), mean(c - 5 for c in corr[("M", "p5")]))
    assert agg.cell("base2new", "M", ["p5"], "correlated_hm", 16).mean == pytest.approx(chm)
    assert agg.cell("base2new", "M", ["p5"], "hm_gap", 16).mean == pytest.approx(chm - hm)
    assert agg.cell("few_shot", "Old", ["p9"], "gap", 8).mean is None
    with pytest.raises(KeyError, match="not one of"):
        agg.cell("few_shot", "M", ["p9"], "accuracy")

    fs, b2n, masks = build_tables(SCENES_SPEC, agg, {})
    assert fs.header == ["method", "", "p = 0.5 decorr.", "p = 0.5 corr.", "p = 0.5 gap", "p = 0.9 decorr.",
                         "p = 0.9 corr.", "p = 0.9 gap"]
    rows = {r[0]: r for r in fs.rows}
    assert rows["DAPT-G"][5:] == [f"{mean(acc[('G', 'p9')]):.1f} ± {stdev(acc[('G', 'p9')]):.1f}",
                                  f"{mean(corr[('G', 'p9')]):.1f} ± {stdev(corr[('G', 'p9')]):.1f}",
                                  f"{mean(gaps):.1f} ± {stdev(gaps):.1f}"]
    # a run without the correlated test: its accuracy, and "–" where nothing was logged
    assert rows["old runs"][2:] == ["–", "–", "–", "51.5 ± 0.7 (2/3 seeds)", "–", "–"]
    assert [r[0] for r in masks.rows] == ["DAPT-G"] and masks.rows[0][2:] == ["0.600 ± 0.100", "0.200 ± 0.132"]
    b2n_rows = {r[0]: r for r in b2n.rows}
    assert b2n_rows["MaPLe"][2:5] == [f"{hm:.1f}", f"{chm:.1f}", f"{chm - hm:.1f}"]
