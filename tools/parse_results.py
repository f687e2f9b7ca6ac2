"""Average the result lines of several seeds (CoOp's parse_test_res habit).

    python tools/parse_results.py output/base2new/train_base/oxford_pets/shots_16/MaPLe/cfg
    python tools/parse_results.py DIR --keyword macro_f1 --ci95
    python tools/parse_results.py --base BASE_DIR --new NEW_DIR      # base-to-novel with HM

A run folder is any folder holding a log.txt (the newest log.txt-<time> also counts); the value
of a run is the LAST "* <keyword>: X%" line in its log, i.e. the final test.
"""
from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional


def last_value(log: Path, keyword: str) -> Optional[float]:
    pat = re.compile(r"^\* " + re.escape(keyword) + r": ([\d.]+)%")
    value = None
    for line in log.read_text(errors="replace").splitlines():
        m = pat.match(line.strip())
        if m:
            value = float(m.group(1))
    return value


def find_runs(directory: Path) -> List[Path]:
    runs = sorted({p.parent for p in directory.rglob("log.txt*")})
    return runs


def run_log(run: Path) -> Path:
    logs = sorted(run.glob("log.txt*"), key=lambda p: p.stat().st_mtime)
    return logs[-1]


def collect(directory: Path, keyword: str) -> Dict[str, float]:
    out = {}
    for run in find_runs(directory):
        v = last_value(run_log(run), keyword)
        if v is not None:
            out[str(run.relative_to(directory)) or "."] = v
    return out


def summarize(values: List[float], ci95: bool) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    if ci95:
        return f"{mean:.2f}% +- {1.96 * std / math.sqrt(len(values)):.2f}% (95% CI)"
    return f"{mean:.2f}% +- {std:.2f}%"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", nargs="?", help="folder with one sub-folder per seed")
    p.add_argument("--keyword", default="accuracy", help="result line to read: accuracy, macro_f1, mAP, ...")
    p.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    p.add_argument("--base", help="base-class test folder (base-to-novel)")
    p.add_argument("--new", help="novel-class test folder (base-to-novel)")
    args = p.parse_args(argv)
    if args.base or args.new:
        if not (args.base and args.new):
            print("error: --base and --new go together", file=sys.stderr)
            return 2
        b = collect(Path(args.base), args.keyword)
        n = collect(Path(args.new), args.keyword)
        if not b or not n:
            print(f"error: no '* {args.keyword}:' lines under {args.base if not b else args.new}", file=sys.stderr)
            return 1
        mb, mn = statistics.mean(b.values()), statistics.mean(n.values())
        hm = 2 * mb * mn / (mb + mn)
        print(f"base {mb:.2f}%  novel {mn:.2f}%  HM {hm:.2f}%  ({len(b)} / {len(n)} runs)")
        return 0
    if not args.directory:
        p.print_usage(sys.stderr)
        return 2
    d = Path(args.directory)
    if not d.is_dir():
        print(f"error: {d} is not a folder", file=sys.stderr)
        return 2
    res = collect(d, args.keyword)
    if not res:
        print(f"error: no log.txt with a '* {args.keyword}:' line under {d}", file=sys.stderr)
        return 1
    for run, v in res.items():
        print(f"{run}: {args.keyword} {v:.2f}%")
    print(f"=> {args.keyword}: {summarize(list(res.values()), args.ci95)} over {len(res)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
