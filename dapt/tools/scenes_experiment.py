"""The testbed experiment: does decoupling foreground from background (DAPT) make prompt tuning
rely on the object rather than on the scene that co-occurs with its class in training?

Objects-on-scenes at several spurious-correlation strengths p, 3 seeds, two protocols:

  few-shot       train on K shots of all classes; test on every class
  base-to-novel  train on the base classes; test base and novel classes; HM

Every final test reports the decorrelated accuracy (the test split: every class on every background)
and the correlated one (each class on its own background, as in training); gap = correlated -
decorrelated is the size of the shortcut a model took. Methods by default: zero-shot CLIP, MaPLe,
MaPLe+DAPT-G, MaPLe+DAPT-S on ground-truth masks, exact and degraded (dilated, eroded, grid-erased);
PromptSRC / PromptKD rows run on request (--methods).

This is the sweep spec configs/sweeps/scenes.yaml (each run one train.py, as tools/sweep.py runs it)
with the options below applied, then tabled with tools/tables.py's machinery. Writes into --out:

  results.md        mean ± std over seeds: few-shot decorrelated / correlated / gap per p,
                    base-to-novel base / novel / HM / correlated HM per p, last-epoch mask IoU
                    against the ground truth (DAPT runs that logged mask_quality.json), wall time
  results.json      every run: protocol, split, method, p, seed, shots, accuracy,
                    correlated_accuracy, gap, mask_iou, folder
  accuracy_vs_p.png few-shot decorrelated accuracy and gap against p, one line per method, ± std
  sweep_spec.yaml   the spec as run (python tools/sweep.py <it> --output <out> reruns it)
  wall_time.json    the wall time of every invocation into this folder

--hypotheses runs configs/sweeps/scenes_hypotheses.yaml instead (p 0.95, few-shot: DAPT-G with
ground-truth masks, each loss term alone, the official schedule) and writes hypotheses.md /
hypotheses.json / hypotheses_spec.yaml; into the grid's --out it reuses the grid's runs it shares.
Rerunning into the same --out resumes: finished runs are kept (a run whose saved config differs is
reported as stale, never overwritten).

    python tools/scenes_experiment.py --out output/scenes_experiment
    python tools/scenes_experiment.py --hypotheses --out output/scenes_experiment
    python tools/scenes_experiment.py --p 0.5 0.9 --seeds 1 --protocols few_shot --out output/quick_grid
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GRID_SPEC = "configs/sweeps/scenes.yaml"
HYPOTHESES_SPEC = "configs/sweeps/scenes_hypotheses.yaml"
PROTOCOLS = ("few_shot", "base2new")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="scenes_experiment.py", description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (an existing one is resumed)")
    ap.add_argument("--hypotheses", action="store_true",
                    help=f"run the hypothesis runs ({HYPOTHESES_SPEC}) instead of the grid")
    ap.add_argument("--p", type=float, nargs="+", default=None,
                    help="spurious-correlation strengths (default: the spec's: 0.5 0.8 0.95; hypotheses 0.95)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the spec's (1 2 3)")
    ap.add_argument("--shots", type=int, default=None, help="few-shot protocol: images per class (spec: 8)")
    ap.add_argument("--b2n-shots", type=int, default=None, help="base-to-novel protocol: images per base class (16)")
    ap.add_argument("--protocols", nargs="+", default=None, choices=PROTOCOLS,
                    help="default: the spec's (grid: both; hypotheses: few_shot)")
    ap.add_argument("--methods", nargs="+", default=None,
                    help="method names of the spec (default: its default_methods; e.g. add PromptSRC PromptKD)")
    ap.add_argument("--epochs", type=int, default=None, help="override OPTIM.MAX_EPOCH")
    ap.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="more config overrides for every run")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (CPU)")
    ap.add_argument("--dry-run", action="store_true", help="print the train.py commands and their count; run nothing")
    return ap


class OptionError(ValueError):
    """An option the spec cannot take: one line for the user."""


def build_spec(args, base: dict, spec_path: str) -> dict:
    """The spec with the options applied (the one written to <out>/sweep_spec.yaml)."""
    data = copy.deepcopy(base)
    if args.p:
        bad = [p for p in args.p if not 0.0 <= p <= 1.0]
        if bad:
            raise OptionError(f"--p {' '.join(f'{p:g}' for p in bad)}: p is a probability, in [0, 1]")
        cfg = data["datasets"][0]["config"]
        data["datasets"] = [{"name": f"scenes_p{p:g}", "label": f"p = {p:g}", "config": cfg,
                             "opts": ["DATASET.SCENES.P", f"{p:g}"]} for p in args.p]
    if args.seeds:
        data["seeds"] = list(args.seeds)
    settings = data["setting"] if isinstance(data["setting"], list) else [data["setting"]]
    shots = data["shots"] if isinstance(data["shots"], dict) else {settings[0]: data["shots"]}
    if args.protocols:
        unknown = [p for p in args.protocols if p not in settings]
        if unknown:
            raise OptionError(f"--protocols {' '.join(unknown)}: {spec_path} runs only {', '.join(settings)}")
        settings = [s for s in settings if s in args.protocols]
    if args.shots is not None and "few_shot" in shots:
        shots["few_shot"] = [args.shots]
    if args.b2n_shots is not None and "base2new" in shots:
        shots["base2new"] = [args.b2n_shots]
    data["setting"] = settings
    data["shots"] = {k: v for k, v in shots.items() if k in settings}
    names = [m["name"] for m in data["methods"]]
    if args.methods:
        unknown = [m for m in args.methods if m not in names]
        if unknown:
            raise OptionError(f"--methods {' '.join(unknown)}: not in {spec_path} ({', '.join(names)})")
        data["default_methods"] = list(args.methods)
    chosen = data.get("default_methods") or names
    # a student brings its teacher
    chosen = [n for n in names if n in chosen or any(m.get("teacher") == n and m["name"] in chosen
                                                     for m in data["methods"])]
    data["default_methods"] = chosen
    extra = list(args.opts) + (["OPTIM.MAX_EPOCH", str(args.epochs)] if args.epochs is not None else [])
    if len(extra) % 2:
        raise OptionError(f"--opts {' '.join(args.opts)}: KEY VALUE pairs expected")
    data["opts"] = list(data.get("opts", [])) + extra
    table = data["table"]
    table["rows"] = [r for r in table["rows"] if r.get("method") in chosen]
    subs = []
    for sub in table["tables"]:
        if sub["setting"] not in settings:
            continue
        n = data["shots"][sub["setting"]][0]
        sub["title"] = sub["title"].replace("(8 shots)", f"({n} shots)").replace("(16 shots)", f"({n} shots)")
        subs.append(sub)
    table["tables"] = subs
    return data


def _p(run) -> Optional[float]:
    try:
        return float(run.config["DATASET"]["SCENES"]["P"])
    except (KeyError, TypeError, ValueError):
        return None


def run_records(runs, out: str) -> List[dict]:
    """One record per finished run (results.json)."""
    recs = []
    for r in runs:
        acc = r.results.get("accuracy")
        corr = r.results.get("correlated_accuracy")
        recs.append({"protocol": r.setting, "split": r.split, "method": r.method, "p": _p(r), "seed": r.seed,
                     "shots": r.shots, "accuracy": acc, "correlated_accuracy": corr,
                     "gap": corr - acc if corr is not None and acc is not None else None,
                     "mask_iou": r.extra.get("mask_iou"), "folder": os.path.relpath(r.path, out)})
    return recs


def record_wall_time(out: str, spec_name: str, seconds: float, outcomes) -> float:
    """Append this invocation to <out>/wall_time.json; -> the spec's total over every invocation."""
    path = os.path.join(out, "wall_time.json")
    entries = []
    if os.path.isfile(path):
        try:
            with open(path) as f:
                entries = json.load(f)
        except ValueError:
            print(f"warning: {path} is not valid JSON; starting it again", file=sys.stderr)
            entries = []
    entries.append({"spec": spec_name, "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "seconds": round(seconds, 1), "jobs_ran": sum(o.status == "done" for o in outcomes),
        "jobs_skipped": sum(o.status == "skipped" for o in outcomes),
        "jobs_failed": sum(o.status in ("failed", "stale", "interrupted") for o in outcomes)})
    from dapt.utils.atomic import atomic_write_text

    atomic_write_text(Path(path), json.dumps(entries, indent=1) + "\n")
    return sum(e["seconds"] for e in entries if e.get("spec") == spec_name)


def plot_against_p(path: str, data: dict, agg, title: str) -> bool:
    """Few-shot decorrelated accuracy (and the gap, when logged) against p, one line per method."""
    from dapt.utils.plots import line_panels

    ps = [float(d["opts"][1]) for d in data["datasets"]]
    shots = data["shots"]["few_shot"][0]
    panels = []
    for metric, sub_title, ylabel in (("acc", "decorrelated test (every class on every background)", "accuracy (%)"),
                                      ("gap", "gap: correlated - decorrelated test", "accuracy difference (points)")):
        series: Dict[str, list] = {}
        for row in data["table"]["rows"]:
            cells = [agg.cell("few_shot", row["method"], [d["name"]], metric, shots) for d in data["datasets"]]
            if any(c.mean is not None for c in cells):
                series[row["label"]] = [(c.mean, c.std) for c in cells]
        if series:
            panels.append((series, sub_title, ylabel))
    if not panels:
        return False
    line_panels(path, ps, panels, "p (training split's spurious correlation)", title)
    return True


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    import yaml

    from dapt.config import ConfigError
    from dapt.config.paths import resolve_config
    from dapt.tools.runs import read_run
    from dapt.tools.sweep import Spec, SpecError, _abs_dir, check_spec, expand, load_spec, run_queue, summary
    from dapt.tools.tables import Aggregator, build_tables, load_paper_numbers
    from dapt.utils.misc import plural

    spec_file = HYPOTHESES_SPEC if args.hypotheses else GRID_SPEC
    prefix = "hypotheses" if args.hypotheses else "results"
    try:
        base = load_spec(resolve_config(spec_file))
        data = build_spec(args, base.data, spec_file)
        spec_path = os.path.join(args.out, "hypotheses_spec.yaml" if args.hypotheses else "sweep_spec.yaml")
        check_spec(spec_path, data)
        jobs, notes = expand(Spec(spec_path, data), args.out)
    except (SpecError, ConfigError, OptionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = sorted({f for j in jobs for f in j.missing})
    if missing:
        notes.append(f"left out (config file missing: {', '.join(missing)}): "
                     f"{', '.join(sorted({j.method for j in jobs if j.missing}))}")
        jobs = [j for j in jobs if not j.missing]
    n_runs = sum(len(j.steps) for j in jobs)
    if args.dry_run:
        for job in jobs:
            for step in job.steps:
                print(step.command("python"))
        print(f"# {plural(len(jobs), 'job')}, {n_runs} train.py run(s)")
        for n in notes:
            print(f"# {n}")
        return 0
    os.makedirs(args.out, exist_ok=True)
    with open(spec_path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)

    t0 = time.time()
    print(f"{plural(len(jobs), 'job')} ({n_runs} train.py runs); the same as: python tools/sweep.py {spec_path} "
          f"--output {args.out} --gpus cpu --per-gpu {args.jobs}", flush=True)
    outcomes = run_queue(jobs, ["cpu"], args.jobs,
                         progress=lambda msg: print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True))
    seconds = time.time() - t0
    print(summary(outcomes, notes))
    total = record_wall_time(args.out, data["name"], seconds, outcomes)

    runs = [read_run(_abs_dir(s.output_dir)) for j in jobs for s in j.steps]
    runs = [r for r in runs if r.finished and r.setting]
    with open(os.path.join(args.out, f"{prefix}.json"), "w") as f:
        json.dump(run_records(runs, args.out), f, indent=1)
    agg = Aggregator(runs)
    tables = [t for t in build_tables(data, agg, load_paper_numbers())
              if any(rec["ours"] != "" for rec in t.records)]  # a table nothing has a value for (mask IoU) is left out
    seeds = data["seeds"]
    lines = [f"# {data['title']}", "",
             f"{plural(len(seeds), 'seed')} ({', '.join(map(str, seeds))}), mean ± std over seeds; "
             f"decorr. = the test split (every class on every background), corr. = each class on its own background "
             f"(as in training), gap = corr. - decorr. (per seed). HM is of the seed means (no std).", ""]
    lines += [t.markdown() + "\n" for t in tables]
    if any("–" in row for t in tables for row in t.rows):
        lines.append("–: not logged by these runs (a final test without the correlated test set; for the mask IoU, "
                     "a method without DAPT masks or a run without mask_quality.json).\n")
    if not any(r.extra.get("mask_iou") is not None for r in runs):
        lines.append("No run logged mask_quality.json: no mask-quality table.\n")
    ran = sum(o.status == "done" for o in outcomes)
    lines.append(f"Wall time: {seconds:.0f} s for this invocation ({plural(ran, 'job')} ran, "
                 f"{sum(o.status == 'skipped' for o in outcomes)} already done; {n_runs} train.py runs in all, "
                 f"{args.jobs} at a time on the CPU); {total:.0f} s over every invocation into {args.out} "
                 f"(wall_time.json).")
    lines += [f"- {n}" for n in notes]
    from dapt.utils.atomic import atomic_write_text

    atomic_write_text(Path(args.out) / f"{prefix}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))

    if not args.hypotheses and "few_shot" in data["setting"]:
        png = os.path.join(args.out, "accuracy_vs_p.png")
        shots = data["shots"]["few_shot"][0]
        if plot_against_p(png, data, agg, f"objects on scenes, {shots}-shot, {plural(len(seeds), 'seed')} "
                                          f"(error bars: std over seeds)"):
            print(f"wrote {png}")
    print(f"total wall time {seconds:.0f} s; results in {os.path.join(args.out, prefix + '.md')}")
    failed = [o for o in outcomes if o.status in ("failed", "stale", "interrupted")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
