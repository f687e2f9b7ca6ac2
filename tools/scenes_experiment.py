"""The full testbed experiment: zero-shot CLIP, MaPLe, MaPLe+DAPT-G and MaPLe+DAPT-S on
objects-on-scenes, over several spurious-correlation strengths p and seeds, in two protocols:

  few-shot       train on K shots of all classes, test on the uniform test split
  base-to-novel  train on the base classes; test base and novel classes; HM

Writes <out>/results.md (mean +- std over seeds), <out>/results.json (every run) and
<out>/accuracy_vs_p.png (few-shot accuracy against p, one line per method).

    python tools/scenes_experiment.py --out output/scenes_experiment
    python tools/scenes_experiment.py --p 0.5 0.9 --seeds 1 --shots 8 --out output/quick_grid
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def mean_std(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values):
    m, s = mean_std(values)
    return f"{m:.1f} ± {s:.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    ap.add_argument("--p", type=float, nargs="+", default=[0.5, 0.8, 0.95])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--shots", type=int, default=8, help="few-shot protocol: images per class")
    ap.add_argument("--b2n-shots", type=int, default=16, help="base-to-novel protocol: images per base class")
    ap.add_argument("--protocols", nargs="+", default=["few_shot", "base2new"], choices=["few_shot", "base2new"])
    ap.add_argument("--epochs", type=int, default=None, help="override OPTIM.MAX_EPOCH")
    args = ap.parse_args(argv)
    if os.path.isdir(args.out) and os.listdir(args.out):
        print(f"error: {args.out} is not empty; choose another --out (outputs are never overwritten)", file=sys.stderr)
        return 2

    from dapt.experiments.plot import line_plot
    from dapt.experiments.scenes import METHODS, RunSpec, harmonic_mean, markdown_table, run

    runs = []
    t0 = time.time()

    def do(spec, protocol, split=""):
        res = run(spec, args.out)
        runs.append({"protocol": protocol, "split": split, "method": spec.method, "p": spec.p, "seed": spec.seed,
                     "shots": spec.shots, "accuracy": res["accuracy"]})
        print(f"[{time.time() - t0:6.0f}s] {protocol:9s} p={spec.p:<5g} seed={spec.seed} {spec.method:15s} "
              f"{split:5s} {res['accuracy']:.1f}%", flush=True)

    for p in args.p:
        for seed in args.seeds:
            for method in METHODS:
                if "few_shot" in args.protocols:
                    do(RunSpec(method, seed=seed, p=p, shots=args.shots, epochs=args.epochs), "few_shot")
                if "base2new" in args.protocols:
                    base = RunSpec(method, seed=seed, p=p, shots=args.b2n_shots, subsample="base", epochs=args.epochs)
                    do(base, "base2new", "base")
                    model_dir = "" if METHODS[method][0] == "ZeroshotCLIP" else os.path.join(args.out, base.tag())
                    do(RunSpec(method, seed=seed, p=p, shots=args.b2n_shots, subsample="new", epochs=args.epochs,
                               model_dir=model_dir), "base2new", "new")

    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(runs, f, indent=1)

    def accs(protocol, method, p, split=""):
        return [r["accuracy"] for r in runs if r["protocol"] == protocol and r["method"] == method
                and r["p"] == p and r["split"] == split]

    lines = [f"# Objects on scenes: {len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}), mean ± std", ""]
    if "few_shot" in args.protocols:
        lines += [f"## Few-shot ({args.shots} shots), test accuracy (%)", ""]
        header = ["method"] + [f"p = {p:g}" for p in args.p]
        rows = [[m] + [fmt(accs("few_shot", m, p)) for p in args.p] for m in METHODS]
        lines += [markdown_table(header, rows), ""]
        series = {m: [mean_std(accs("few_shot", m, p)) for p in args.p] for m in METHODS}
        line_plot(os.path.join(args.out, "accuracy_vs_p.png"), args.p, series,
                  f"objects on scenes, {args.shots}-shot, {len(args.seeds)} seeds", "p (train spurious correlation)",
                  "test accuracy (%)")
    if "base2new" in args.protocols:
        lines += [f"## Base-to-novel ({args.b2n_shots} shots), accuracy (%): base / novel / HM", ""]
        header = ["method"] + [f"p = {p:g}" for p in args.p]
        rows = []
        for m in METHODS:
            cells = []
            for p in args.p:
                b, n = accs("base2new", m, p, "base"), accs("base2new", m, p, "new")
                hm = harmonic_mean(statistics.mean(b), statistics.mean(n))
                cells.append(f"{statistics.mean(b):.1f} / {statistics.mean(n):.1f} / {hm:.1f}")
            rows.append([m] + cells)
        lines += [markdown_table(header, rows), ""]
    lines.append(f"Total time {time.time() - t0:.0f} s. Every run's log and checkpoint is under {args.out}.")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
