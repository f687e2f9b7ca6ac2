"""The README's first command: zero-shot CLIP, MaPLe, MaPLe+DAPT-G and MaPLe+DAPT-S on the
objects-on-scenes testbed with the shipped toy CLIP, then a table of test accuracies.

    python tools/quickstart.py                 # a few minutes on 2 CPU cores, no network
    python tools/quickstart.py --p 0.95 --seed 2 --output-dir output/quickstart

Training objects sit on their "own" background with probability p (a spurious cue); the test
split pairs objects and backgrounds uniformly, so a model that learned the background loses.
Every run is an ordinary train.py run; the equivalent commands are printed.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--p", type=float, default=0.9, help="spurious object/background correlation of the training split")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="override OPTIM.MAX_EPOCH")
    p.add_argument("--output-dir", default="", help="default: output/quickstart/<time>")
    p.add_argument("--verbose", action="store_true", help="show the training logs")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    from dapt.experiments.scenes import METHODS, RunSpec, command_line, run

    out = args.output_dir or os.path.join("output", "quickstart", time.strftime("%Y%m%d-%H%M%S"))
    if os.path.isdir(out) and os.listdir(out):
        print(f"error: {out} is not empty; choose another --output-dir (outputs are never overwritten)", file=sys.stderr)
        return 2
    results = {}
    t0 = time.time()
    for name in METHODS:
        spec = RunSpec(method=name, seed=args.seed, p=args.p, epochs=args.epochs)
        print(f"[{time.time() - t0:5.0f}s] {name}: {command_line(spec, os.path.join(out, spec.tag()))}", flush=True)
        res = run(spec, out, console=args.verbose)
        results[name] = res["accuracy"]
        print(f"[{time.time() - t0:5.0f}s] {name}: test accuracy {res['accuracy']:.1f}%", flush=True)
    print()
    print(f"Objects on scenes, p = {args.p:g} (train: own background with prob. p; test: uniform), seed {args.seed}")
    print("| method | test accuracy |")
    print("|---|---|")
    for name, acc in results.items():
        print(f"| {name} | {acc:.1f}% |")
    print(f"\ntotal time {time.time() - t0:.0f} s; logs and checkpoints in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
