"""``tools/tables.py``: every run under an output root, averaged over seeds, in the paper's tables.

Runs are read with ``dapt/tools/runs.py`` and grouped by setting, method, dataset and shots (and
base/novel split, cross-dataset target, data fraction); each group's final test metric (accuracy,
or mAP) is averaged over its seeds (mean and sample std; a cell with fewer seeds than the spec
asks for is flagged). Base-to-novel HM is 2BN/(B+N) of the seed-averaged base and novel accuracies,
and of the dataset-averaged ones for an average over datasets (how the paper's Table 1 is computed).

A column's ``metric`` is one of ``METRICS``: the main result (``acc``; ``base`` / ``novel`` of
base-to-novel, and their ``hm``), another final-test line (``correlated_accuracy``: the
objects-on-scenes test set where each class sits on its own background; ``correlated_base`` /
``correlated_novel`` / ``correlated_hm``), a difference (``gap`` = correlated_accuracy - acc, per
seed, then mean ± std; ``hm_gap`` = correlated_hm - hm), a run's ``mask_iou`` (last-epoch IoU of
its training masks against the ground truth) or ``train_min_per_epoch``. A cell with no value in
a row that has others shows "–".

The layouts come from the ``table:`` section of the sweep specs (``configs/sweeps/*.yaml``); the
paper's published numbers from ``dapt/tools/paper_numbers.yaml``. Each table is written as
markdown and CSV, with for every row our mean, the paper's number and the difference; rows we do
not run show the paper's numbers only, marked "not run". Runs no spec table covers still appear
in ``summary.md`` (one line per group).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from dapt.tools.runs import Run, find_runs

logger = logging.getLogger(__name__)

PAPER_NUMBERS = Path(__file__).resolve().parent / "paper_numbers.yaml"
_ANY = ("", "test", "train")  # the split of a run outside base-to-novel (xd: its test / train runs)
# metric -> (the value read from each run: "metric" = accuracy / mAP, else a final-test key or Run.extra key,
#            the run splits it is read from, first found wins)
VALUES = {
    "acc": ("metric", _ANY), "base": ("metric", ("base",)), "novel": ("metric", ("new",)),
    "correlated_accuracy": ("correlated_accuracy", _ANY), "correlated_base": ("correlated_accuracy", ("base",)),
    "correlated_novel": ("correlated_accuracy", ("new",)),
    "mask_iou": ("mask_iou", _ANY), "train_min_per_epoch": ("train_min_per_epoch", _ANY),
}
HMS = {"hm": ("base", "novel"), "correlated_hm": ("correlated_base", "correlated_novel")}  # HM of seed means
DIFFS = {"gap": ("correlated_accuracy", "acc"), "hm_gap": ("correlated_hm", "hm")}  # first minus second
METRICS = tuple(VALUES) + tuple(HMS) + tuple(DIFFS) + ("none",)

# (setting, method, dataset, shots, ratio, split) -> {seed: value}
GroupKey = Tuple[str, str, str, Optional[int], Optional[float], str]


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def collect(runs: Sequence[Run], value: str = "metric") -> Dict[GroupKey, Dict[int, float]]:
    """Finished runs in the layout, grouped; ``value``: "metric" (accuracy / mAP), another key of the
    final test (correlated_accuracy) or of ``Run.extra`` (train_min_per_epoch, mask_iou)."""
    groups: Dict[GroupKey, Dict[int, float]] = {}
    for r in runs:
        if not r.finished or not r.setting or r.seed is None:
            continue
        v = r.metric if value == "metric" else r.results.get(value, r.extra.get(value))
        if v is None:
            continue
        key = (r.setting, r.method, r.dataset, r.shots if r.setting != "data_efficient" else None, r.ratio, r.split)
        groups.setdefault(key, {})[int(r.seed)] = float(v)
    return groups


@dataclass
class Cell:
    mean: Optional[float] = None
    std: Optional[float] = None
    seeds: int = 0  # seeds found (the smallest count over the averaged datasets)
    want_seeds: int = 0
    datasets: int = 0
    want_datasets: int = 0

    def text(self, digits: int = 2) -> str:
        if self.mean is None:
            return ""
        s = f"{self.mean:.{digits}f}"
        if self.std is not None:
            s += f" ± {self.std:.{digits}f}"
        flags = []
        if self.want_seeds and self.seeds < self.want_seeds:
            flags.append(f"{self.seeds}/{self.want_seeds} seeds")
        if self.want_datasets and self.datasets < self.want_datasets:
            flags.append(f"{self.datasets}/{self.want_datasets} datasets")
        return s + (f" ({', '.join(flags)})" if flags else "")


class Aggregator:
    """Seed and dataset averages of the grouped runs."""

    def __init__(self, runs: Sequence[Run]):
        self.runs = list(runs)
        self._values: Dict[str, Dict[GroupKey, Dict[int, float]]] = {}

    def groups_of(self, value: str) -> Dict[GroupKey, Dict[int, float]]:
        if value not in self._values:
            self._values[value] = collect(self.runs, value)
        return self._values[value]

    @property
    def groups(self) -> Dict[GroupKey, Dict[int, float]]:
        return self.groups_of("metric")

    def seeds(self, setting, method, dataset, shots, ratio, splits, timing=False, value=None) -> Dict[int, float]:
        groups = self.groups_of(value or ("train_min_per_epoch" if timing else "metric"))
        for split in splits:
            found: Dict[int, float] = {}
            for (s, m, d, n, r, sp), vals in groups.items():
                if (s, m, d, sp) == (setting, method, dataset, split) and (shots is None or n == shots) \
                        and (ratio is None or r == ratio):
                    found.update(vals)
            if found:
                return found
        return {}

    def _per_seed(self, setting, method, dataset, metric, shots, ratio) -> Dict[int, float]:
        """seed -> value of a read metric, or the per-seed difference of a ``DIFFS`` metric."""
        if metric in DIFFS:
            a, b = (self._per_seed(setting, method, dataset, m, shots, ratio) for m in DIFFS[metric])
            return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}
        value, splits = VALUES[metric]
        return self.seeds(setting, method, dataset, shots, ratio, splits, value=value)

    def cell(self, setting: str, method: str, datasets: Sequence[str], metric: str, shots: Optional[int] = None,
             ratio: Optional[float] = None, want_seeds: int = 0) -> Cell:
        """Mean over ``datasets`` of the seed means; std over seeds of the seed-wise dataset average."""
        if metric == "none":  # a published column we do not measure
            return Cell()
        if metric not in METRICS:
            raise KeyError(f"metric '{metric}': not one of {', '.join(METRICS)}")
        want_ds = len(datasets) if len(datasets) > 1 else 0
        if metric in HMS or (metric in DIFFS and DIFFS[metric][0] in HMS):
            # of the seed (and dataset) averages, as the paper computes HM: no std
            parts = [self.cell(setting, method, datasets, m, shots, ratio, want_seeds)
                     for m in (HMS[metric] if metric in HMS else DIFFS[metric])]
            if any(c.mean is None for c in parts):
                return Cell(want_seeds=want_seeds, want_datasets=want_ds)
            a, b = parts[0].mean, parts[1].mean
            mean = harmonic_mean(a, b) if metric in HMS else a - b
            return Cell(mean, None, min(c.seeds for c in parts), want_seeds, min(c.datasets for c in parts),
                        parts[0].want_datasets)
        per_ds = {}
        for ds in datasets:
            vals = self._per_seed(setting, method, ds, metric, shots, ratio)
            if vals:
                per_ds[ds] = vals
        if not per_ds:
            return Cell(want_seeds=want_seeds, want_datasets=want_ds)
        mean = statistics.mean(statistics.mean(v.values()) for v in per_ds.values())
        common = set.intersection(*(set(v) for v in per_ds.values()))
        seedwise = [statistics.mean(v[s] for v in per_ds.values()) for s in sorted(common)]
        std = statistics.stdev(seedwise) if len(seedwise) > 1 else None
        return Cell(mean, std, min(len(v) for v in per_ds.values()), want_seeds, len(per_ds), want_ds)


def load_paper_numbers(path: Path = PAPER_NUMBERS) -> dict:
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    for tid, entry in data.items():
        ncol = len(entry["columns"])
        for row, vals in entry["rows"].items():
            if len(vals) != ncol:
                raise ValueError(f"{path}: {tid} row {row} has {len(vals)} numbers for {ncol} columns")
    return data


def _columns(sub: dict, spec_datasets: List[str], labels: Optional[Dict[str, str]] = None) -> List[dict]:
    """A sub-table's columns as {label, setting, metric, datasets, shots, ratio}."""
    cols = []
    if sub.get("columns_from") == "datasets":
        metrics = sub["metric"] if isinstance(sub.get("metric"), list) else [sub.get("metric", "acc")]
        mlabels = sub.get("metric_labels") or {}  # metric -> its name in the column label
        for ds in sub.get("datasets", spec_datasets):
            for m in metrics:
                name = (labels or {}).get(ds, ds)
                label = name if len(metrics) == 1 else f"{name} {mlabels.get(m, m)}"
                cols.append(dict(label=label, setting=sub["setting"], metric=m, datasets=[ds],
                                 shots=sub.get("shots"), ratio=sub.get("ratio")))
        return cols
    for c in sub["columns"]:
        ds = [c["dataset"]] if "dataset" in c else list(c.get("datasets", sub.get("datasets", spec_datasets)))
        cols.append(dict(label=str(c["label"]), setting=c.get("setting", sub.get("setting")),
                         metric=c.get("metric", "acc"), datasets=ds, shots=c.get("shots", sub.get("shots")),
                         ratio=c.get("ratio")))
    return cols


@dataclass
class TableOut:
    id: str
    title: str
    header: List[str]
    rows: List[List[str]]
    records: List[dict]  # CSV rows

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def _fmt(x: Optional[float], digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def build_tables(spec_data: dict, agg: Aggregator, paper: dict) -> List[TableOut]:
    """The spec's ``table`` section filled with the aggregated runs and the paper's numbers."""
    table = spec_data["table"]
    tid = str(table.get("id", spec_data.get("name", "")))
    spec_ds = [d if isinstance(d, str) else d["name"] for d in spec_data.get("datasets", []) or []]
    ds_labels = {d["name"]: str(d.get("label", d["name"])) for d in spec_data.get("datasets", []) or []
                 if isinstance(d, dict)}
    want_seeds = len(spec_data.get("seeds", [1, 2, 3]))
    methods = {m["name"]: m for m in spec_data["methods"]}
    all_rows = table.get("rows") or [{"label": m["name"], "method": m["name"]} for m in spec_data["methods"]]
    digits = int(table.get("digits", 2))
    outs = []
    for k, sub in enumerate(table.get("tables", [table])):
        # a sub-table may list its own rows (the methods it concerns), by method name
        rows = [r for r in all_rows if r.get("method") in sub["rows"]] if sub.get("rows") else all_rows
        sub_digits = int(sub.get("digits", digits))
        cols = _columns(sub, spec_ds, ds_labels)
        pub = paper.get(sub.get("paper", "")) if sub.get("paper") else None
        pub_cols = [str(c) for c in pub["columns"]] if pub else []
        deltas = (pub or {}).get("deltas", {}) or {}
        header = ["method", ""] + [c["label"] for c in cols]
        out_rows: List[List[str]] = []
        records: List[dict] = []
        seen_labels = set()
        ours_by_label: Dict[str, List[Cell]] = {}
        for row in rows:
            method = row.get("method")
            m = methods.get(method, {})
            not_run = m.get("not_run") or method is None
            cells = [Cell() if not_run else agg.cell(c["setting"], method, c["datasets"], c["metric"], c["shots"],
                                                      c["ratio"], want_seeds) for c in cols]
            ours_by_label[row["label"]] = cells
        for row in rows:
            label = str(row["label"])
            seen_labels.add(label)
            method = row.get("method")
            m = methods.get(method, {})
            cells = ours_by_label[label]
            ref = deltas.get(label)
            has_ours = any(c.mean is not None for c in cells)
            pub_vals = pub["rows"].get(label) if pub else None
            # not run: no implementation here, or (T8) a mask store that was not given
            not_run = bool(m.get("not_run")) or method is None or (bool(m.get("mask_store")) and not has_ours)
            if ref is not None:  # the paper gives this row as a difference to row `ref`: so do we
                base_cells = ours_by_label.get(ref, [Cell() for _ in cells])
                ours = [c.mean - b.mean if c.mean is not None and b.mean is not None else None
                        for c, b in zip(cells, base_cells)]
                ours_txt = [_fmt(v, sub_digits, sign=True) + (f" ({c.seeds}/{c.want_seeds} seeds)" if v is not None
                                                          and c.want_seeds and c.seeds < c.want_seeds else "")
                            for v, c in zip(ours, cells)]
                kind = f"Δ vs {ref}"
            else:
                ours = [c.mean for c in cells]
                ours_txt = [c.text(sub_digits) or "–" for c in cells]  # "–": no value (not logged by these runs)
                kind = ""
            paper_by_col = {}
            if pub_vals is not None:
                paper_by_col = {c: v for c, v in zip(pub_cols, pub_vals)}
            if not_run:
                out_rows.append([label, "paper" + (f" ({kind})" if kind else "") + ", not run"]
                                + [_fmt(paper_by_col.get(c["label"]), sub_digits, bool(kind)) for c in cols])
            else:
                out_rows.append([label, "ours" + (f" ({kind})" if kind else "")]
                                + (ours_txt if has_ours else ["not run yet"] + [""] * (len(cols) - 1)))
                if pub_vals is not None:
                    out_rows.append(["", "paper"] + [_fmt(paper_by_col.get(c["label"]), sub_digits, bool(kind))
                                                     for c in cols])
                    out_rows.append(["", "difference"] + [
                        _fmt(o - paper_by_col[c["label"]], sub_digits, sign=True)
                        if o is not None and c["label"] in paper_by_col else "" for o, c in zip(ours, cols)])
            for c, cell, o in zip(cols, cells, ours):
                p = paper_by_col.get(c["label"])
                records.append(dict(table=tid, subtable=k + 1, row=label, column=c["label"], kind=kind or "value",
                                    ours=_fmt(o, 4), std=_fmt(cell.std, 4), seeds=cell.seeds,
                                    expected_seeds=cell.want_seeds if not not_run else "",
                                    datasets=cell.datasets, expected_datasets=cell.want_datasets,
                                    paper=_fmt(p, 2), difference=_fmt(o - p, 4) if o is not None and p is not None
                                    else "", status="not run" if not_run else ("" if o is not None else "missing")))
        if pub:  # published rows the spec has no method for
            for label, vals in pub["rows"].items():
                if label in seen_labels:
                    continue
                kind = deltas.get(label)
                by_col = dict(zip(pub_cols, vals))
                out_rows.append([label, "paper" + (f" (Δ vs {kind})" if kind else "") + ", not run"]
                                + [_fmt(by_col.get(c["label"]), sub_digits, bool(kind)) for c in cols])
                for c in cols:
                    records.append(dict(table=tid, subtable=k + 1, row=label, column=c["label"],
                                        kind=f"Δ vs {kind}" if kind else "value", ours="", std="", seeds=0,
                                        expected_seeds="", datasets=0, expected_datasets="",
                                        paper=_fmt(by_col.get(c["label"]), 2), difference="", status="not run"))
        title = str(sub.get("title") or table.get("title") or spec_data.get("title") or tid)
        if pub:
            title += f" (paper: {pub.get('source', sub['paper'])})"
        outs.append(TableOut(tid, title, header, out_rows, records))
    return outs


def summary_table(runs: Sequence[Run]) -> str:
    """One line per (setting, method, dataset, shots / ratio, split) group: mean ± std over seeds."""
    agg = collect(runs)
    lines = ["| setting | method | dataset | shots | split | seeds | mean | std |", "|---|---|---|---|---|---|---|---|"]
    for (s, m, d, n, r, sp), vals in sorted(agg.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        v = list(vals.values())
        std = statistics.stdev(v) if len(v) > 1 else 0.0
        point = f"ratio {r:g}" if r is not None else ("" if n is None else str(n))
        lines.append(f"| {s} | {m} | {d} | {point} | {sp} | {','.join(map(str, sorted(vals)))} | "
                     f"{statistics.mean(v):.2f} | {std:.2f} |")
    return "\n".join(lines)


def write_csv(path: Path, records: List[dict]) -> None:
    if not records:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(records[0]))
    w.writeheader()
    w.writerows(records)
    path.write_text(buf.getvalue())


def spec_tables(sweeps_dir: Path) -> Dict[str, Tuple[str, dict]]:
    """table id -> (spec path, spec data) for every spec with a ``table`` section."""
    import yaml

    out = {}
    for p in sorted(Path(sweeps_dir).glob("*.yaml")):
        data = yaml.safe_load(p.read_text())
        if isinstance(data, dict) and isinstance(data.get("table"), dict):
            tid = str(data["table"].get("id", data.get("name", p.stem)))
            out[tid] = (str(p), data)
    return out


def write_tables(output_root: str, out_dir: Optional[str] = None, only: Optional[Sequence[str]] = None,
                 sweeps_dir: Optional[str] = None, specs: Optional[Dict[str, Tuple[str, dict]]] = None,
                 runs: Optional[List[Run]] = None) -> Dict[str, List[TableOut]]:
    """Write <out_dir>/<id>.md, <id>.csv per table with runs (or every ``only`` table) and summary.md."""
    from dapt.tools.sweep import SWEEPS_DIR

    runs = find_runs(Path(output_root)) if runs is None else runs
    out = Path(out_dir or Path(output_root) / "tables")
    out.mkdir(parents=True, exist_ok=True)
    specs = specs if specs is not None else spec_tables(Path(sweeps_dir) if sweeps_dir else SWEEPS_DIR)
    if only:
        unknown = [t for t in only if t not in specs]
        if unknown:
            raise KeyError(f"--table {' '.join(unknown)}: no such table; known: {', '.join(sorted(specs))}")
    paper = load_paper_numbers()
    agg = Aggregator(runs)
    ran = {r.method for r in runs if r.finished}
    written = {}
    for tid, (path, data) in specs.items():
        if only and tid not in only:
            continue
        if not only and not ({m["name"] for m in data["methods"]} & ran):
            continue  # no run of this table: written only when asked for
        tables = build_tables(data, agg, paper)
        md = "\n\n".join(t.markdown() for t in tables)
        (out / f"{tid}.md").write_text(f"# {data.get('title', tid)}\n\nspec: {Path(path).name}; "
                                       f"mean ± std over seeds (seeds wanted: {len(data.get('seeds', [1, 2, 3]))})\n\n"
                                       f"{md}\n")
        write_csv(out / f"{tid}.csv", [r for t in tables for r in t.records])
        written[tid] = tables
    (out / "summary.md").write_text("# Every run group under " + str(output_root) + "\n\n" + summary_table(runs) + "\n")
    return written


def main(argv=None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="tables.py", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output_root", help="the sweep's output root (upstream layout below it)")
    p.add_argument("--table", nargs="+", help="only these tables (ids: T1, T2, ..., scenes); default: every table "
                                              "with at least one run")
    p.add_argument("--out", help="where to write the tables (default: OUTPUT_ROOT/tables)")
    p.add_argument("--sweeps", help="folder of the specs (default: the shipped configs/sweeps)")
    args = p.parse_args(argv)
    if not Path(args.output_root).is_dir():
        print(f"error: {args.output_root} is not a folder", file=sys.stderr)
        return 2
    try:
        written = write_tables(args.output_root, args.out, args.table, args.sweeps)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    out = Path(args.out or Path(args.output_root) / "tables")
    for tid, tables in written.items():
        print("\n\n".join(t.markdown() for t in tables))
        print()
    print(f"wrote {', '.join(f'{t}.md/.csv' for t in written) or 'no table (no run of any spec table)'} and "
          f"summary.md to {out}")
    return 0
