"""The full testbed experiment: zero-shot CLIP, MaPLe, MaPLe+DAPT-G and MaPLe+DAPT-S on
objects-on-scenes, over several spurious-correlation strengths p and seeds, in two protocols:

  few-shot       train on K shots of all classes, test on the uniform test split
  base-to-novel  train on the base classes; test base and novel classes; HM

This is the sweep spec configs/sweeps/scenes.yaml (run by tools/sweep.py, one train.py per run)
followed by tools/tables.py; the options below edit the spec. Writes <out>/results.md (mean ± std
over seeds), <out>/results.json (every run), <out>/accuracy_vs_p.png (few-shot accuracy against p,
one line per method) and <out>/sweep_spec.yaml (the spec as run). Rerunning into the same --out
resumes: finished runs are kept.

    python tools/scenes_experiment.py --out output/scenes_experiment
    python tools/scenes_experiment.py --p 0.5 0.9 --seeds 1 --shots 8 --out output/quick_grid
"""
import argparse
import copy
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--out", required=True, help="output folder (an existing one is resumed)")
    ap.add_argument("--p", type=float, nargs="+", default=None, help="default: the spec's (0.5 0.8 0.95)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the spec's (1 2 3)")
    ap.add_argument("--shots", type=int, default=None, help="few-shot protocol: images per class (spec: 8)")
    ap.add_argument("--b2n-shots", type=int, default=None, help="base-to-novel protocol: images per base class (16)")
    ap.add_argument("--protocols", nargs="+", default=["few_shot", "base2new"], choices=["few_shot", "base2new"])
    ap.add_argument("--epochs", type=int, default=None, help="override OPTIM.MAX_EPOCH")
    ap.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="more config overrides for every run")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (CPU)")
    args = ap.parse_args(argv)

    import yaml

    from dapt.experiments.plot import line_plot
    from dapt.utils.misc import plural
    from dapt.tools.runs import find_runs
    from dapt.tools.sweep import Spec, check_spec, expand, load_spec, run_queue, summary
    from dapt.tools.tables import Aggregator, build_tables, load_paper_numbers

    from dapt.config.paths import resolve_config

    base = load_spec(resolve_config("configs/sweeps/scenes.yaml"))
    data = copy.deepcopy(base.data)
    if args.p:
        cfg = data["datasets"][0]["config"]
        data["datasets"] = [{"name": f"scenes_p{p:g}", "label": f"p = {p:g}", "config": cfg,
                             "opts": ["DATASET.SCENES.P", f"{p:g}"]} for p in args.p]
    if args.seeds:
        data["seeds"] = list(args.seeds)
    if args.shots is not None:
        data["shots"]["few_shot"] = [args.shots]
    if args.b2n_shots is not None:
        data["shots"]["base2new"] = [args.b2n_shots]
    data["setting"] = [s for s in data["setting"] if s in args.protocols]
    data["shots"] = {k: v for k, v in data["shots"].items() if k in data["setting"]}
    extra = list(args.opts) + (["OPTIM.MAX_EPOCH", str(args.epochs)] if args.epochs is not None else [])
    data["opts"] = list(data.get("opts", [])) + extra
    for sub in data["table"]["tables"]:
        n = data["shots"].get(sub["setting"], [None])[0]
        sub["title"] = sub["title"].replace("(8 shots)", f"({n} shots)").replace("(16 shots)", f"({n} shots)")
    data["table"]["tables"] = [t for t in data["table"]["tables"] if t["setting"] in data["setting"]]
    os.makedirs(args.out, exist_ok=True)
    spec_path = os.path.join(args.out, "sweep_spec.yaml")
    check_spec(spec_path, data)
    with open(spec_path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    spec = Spec(spec_path, data)

    jobs, notes = expand(spec, args.out)
    t0 = time.time()
    print(f"{plural(len(jobs), 'job')}; the same as: python tools/sweep.py {spec_path} --output {args.out} --gpus cpu "
          f"--per-gpu {args.jobs}", flush=True)
    outcomes = run_queue(jobs, ["cpu"], args.jobs,
                         progress=lambda msg: print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True))
    print(summary(outcomes, notes))

    runs = [r for r in find_runs(args.out) if r.finished and r.setting]
    records = [{"protocol": r.setting, "split": r.split if r.setting == "base2new" else "", "method": r.method,
                "p": float(r.config["DATASET"]["SCENES"]["P"]), "seed": r.seed, "shots": r.shots,
                "accuracy": r.metric, "folder": os.path.relpath(r.path, args.out)} for r in runs]
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(records, f, indent=1)
    tables = build_tables(data, Aggregator(runs), load_paper_numbers())
    seeds = data["seeds"]
    lines = [f"# Objects on scenes: {plural(len(seeds), 'seed')} ({', '.join(map(str, seeds))}), mean ± std", ""]
    lines += [t.markdown() + "\n" for t in tables]
    lines.append(f"Sweep time {time.time() - t0:.0f} s. Every run's log and checkpoint is under {args.out}; "
                 f"python tools/tables.py {args.out} --sweeps {args.out} --table scenes writes them as CSV too.")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    if "few_shot" in data["setting"]:
        agg = Aggregator(runs)
        ps = [float(d["opts"][1]) for d in data["datasets"]]
        series = {}
        for row in data["table"]["rows"]:
            cells = [agg.cell("few_shot", row["method"], [d["name"]], "acc") for d in data["datasets"]]
            if all(c.mean is not None for c in cells):
                series[row["label"]] = [(c.mean, c.std or 0.0) for c in cells]
        if series and len(ps) > 0:
            line_plot(os.path.join(args.out, "accuracy_vs_p.png"), ps, series,
                      f"objects on scenes, {data['shots']['few_shot'][0]}-shot, {plural(len(seeds), 'seed')}",
                      "p (train spurious correlation)", "test accuracy (%)")
    failed = [o for o in outcomes if o.status in ("failed", "stale", "interrupted")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
