"""The README's first command: zero-shot CLIP, MaPLe, MaPLe+DAPT-G and MaPLe+DAPT-S on the
objects-on-scenes testbed with the shipped toy CLIP, then the headline of the testbed experiment.

    dapt-quickstart                            # or: python tools/quickstart.py (no network)
    dapt-quickstart --p 0.95 --seed 2 --output-dir output/quickstart
    dapt-quickstart --methods "zero-shot CLIP" MaPLe --epochs 1      # a smaller setting
    dapt-quickstart --epochs 5                  # the testbed configs' schedule (about 2 min)

Training objects sit on their "own" background with probability p (a shortcut); colours are shared
across classes, so only the shape names the object. Every run is tested twice: on the decorrelated
test set (every object on every background) and on a correlated one (own background with
probability p, as in training). The gap between the two measures how much a model relies on the
background. Every run is an ordinary train.py run; the equivalent commands are written to results.md.
Writes <output-dir>/results.md (table and commands) and <output-dir>/results.png (bar plot).
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUICK_EPOCHS = 4  # 1 warm-up epoch + 3; with the configs' 5 the quickstart took 2 min 0 s on 2 cores


def main(argv=None) -> int:
    from dapt.experiments.scenes import METHODS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--p", type=float, default=0.9, help="spurious object/background correlation of the training split")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=QUICK_EPOCHS,
                   help=f"OPTIM.MAX_EPOCH of every run (default {QUICK_EPOCHS}, so that the four runs take under 2 minutes "
                        "on 2 CPU cores; the testbed configs and the grid train 5)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                   help=f"the runs, in this order (default: all of {', '.join(METHODS)})")
    p.add_argument("--output-dir", default="", help="default: output/quickstart/<time>")
    p.add_argument("--verbose", action="store_true", help="show the training logs")
    args = p.parse_args(argv)

    import torch
    from tqdm import tqdm

    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    from dapt.experiments.plot import bar_plot
    from dapt.experiments.scenes import RunSpec, command_line, final_mask_iou, markdown_table, run
    from dapt.utils.atomic import atomic_write_text

    out = args.output_dir or os.path.join("output", "quickstart", time.strftime("%Y%m%d-%H%M%S"))
    if os.path.isdir(out) and os.listdir(out):
        print(f"error: {out} is not empty; choose another --output-dir (outputs are never overwritten)", file=sys.stderr)
        return 2
    results, commands = {}, []
    t0 = time.time()
    bar = tqdm(args.methods, unit="run", desc="quickstart", dynamic_ncols=True,
               bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed} elapsed, ETA {remaining}")
    for name in bar:
        bar.set_description_str(f"quickstart: {name}")
        spec = RunSpec(method=name, seed=args.seed, p=args.p, epochs=args.epochs)
        run_dir = os.path.join(out, spec.tag())
        commands.append(command_line(spec, run_dir))
        res = run(spec, out, console=args.verbose)
        results[name] = dict(res, mask_iou=final_mask_iou(run_dir))
        bar.write(f"{name}: test accuracy {res['accuracy']:.1f}% decorrelated, "
                  f"{res.get('correlated_accuracy', float('nan')):.1f}% correlated ({time.time() - t0:.0f} s so far)")
    bar.close()
    title = (f"Objects on scenes, p = {args.p:g} (train: own background with prob. p), seed {args.seed}, "
             f"{args.epochs} epochs: test accuracy")
    rows = []
    for n, r in results.items():
        corr = r.get("correlated_accuracy")
        rows.append([n, f"{r['accuracy']:.1f}%", "–" if corr is None else f"{corr:.1f}%",
                     "–" if corr is None else f"{corr - r['accuracy']:+.1f}",
                     "–" if r["mask_iou"] is None else f"{r['mask_iou']:.2f}"])
    table = markdown_table(["method", "decorrelated test", "correlated test", "gap (shortcut)", "mask IoU"], rows)
    elapsed = time.time() - t0
    note = ("decorrelated: every object on every background; correlated: own background with probability p, as in "
            "training; gap = correlated - decorrelated (how much the model leans on the background); mask IoU: "
            "the masks DAPT trained with (last epoch) against the exact object masks.")
    md = [f"# {title}", "", table, "", note, "", f"Total time {elapsed:.0f} s.", "", "The same runs with train.py:", "",
          "```"]
    md += commands + ["```", ""]
    atomic_write_text(Path(out) / "results.md", "\n".join(md))
    bar_plot(os.path.join(out, "results.png"), {n: r["accuracy"] for n, r in results.items()},
             f"objects on scenes, p = {args.p:g}, seed {args.seed}: decorrelated test", "test accuracy (%)")
    print()
    print(title)
    print(table)
    print(note)
    print(f"\ntotal time {elapsed:.0f} s; results.md, results.png, logs and checkpoints in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
