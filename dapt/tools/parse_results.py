"""``tools/parse_results.py``: mean and std of the seeds under a folder, one experiment at a time."""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from dapt.config import flatten
from dapt.tools.runs import PER_RUN_KEYS, Run, find_runs
from dapt.utils.misc import plural


def group_runs(runs: List[Run]) -> Dict[Tuple[str, str, str], List[Run]]:
    """(method, config name, config fingerprint) -> runs, in path order."""
    groups: Dict[Tuple[str, str, str], List[Run]] = {}
    for r in runs:
        groups.setdefault((r.method, r.cfg_name, r.experiment_key()), []).append(r)
    return groups


def differing_keys(groups: List[List[Run]], limit: int = 6) -> List[str]:
    """Config keys whose values differ between the groups (seed and output folder excluded)."""
    flats = [flatten(g[0].config) for g in groups if g[0].config is not None]
    if len(flats) < 2:
        return []
    keys = sorted(set().union(*flats) - set(PER_RUN_KEYS))
    out = []
    for k in keys:
        vals = {repr(f.get(k, "<absent>")) for f in flats}
        if len(vals) > 1:
            out.append(f"{k} ({' / '.join(sorted(vals))})")
    return out[:limit] + ([f"... {len(out) - limit} more"] if len(out) > limit else [])


def describe_groups(groups, directory: Path) -> str:
    lines = []
    for i, ((method, cfg, key), runs) in enumerate(groups.items(), 1):
        rels = [str(r.path.relative_to(directory)) if r.path != directory else "." for r in runs]
        shown = ", ".join(rels[:4]) + (f", ... ({len(rels)} runs)" if len(rels) > 4 else "")
        lines.append(f"  group {i}: method {method}, config {cfg} [{key}]: {shown}")
    diff = differing_keys(list(groups.values()))
    if diff:
        lines.append("  they differ in: " + "; ".join(diff))
    return "\n".join(lines)


def select(directory: Path, keyword: str, group: Optional[int], label: str) -> Tuple[Optional[Dict[str, float]], str]:
    """-> ({run: value}, error message)."""
    runs = [r for r in find_runs(directory) if keyword in r.results]
    if not runs:
        return None, f"no log.txt with a '* {keyword}:' line under {directory}"
    groups = group_runs(runs)
    if group is not None:
        if not 1 <= group <= len(groups):
            return None, f"--group {group}: {label} has {plural(len(groups), 'group')}\n{describe_groups(groups, directory)}"
        chosen = list(groups.values())[group - 1]
    elif len(groups) > 1:
        return None, (f"{label} mixes {len(groups)} experiments (method / config); not averaging them together. "
                      f"Give a narrower folder or --group N:\n{describe_groups(groups, directory)}")
    else:
        chosen = runs
    return {(str(r.path.relative_to(directory)) if r.path != directory else "."): r.results[keyword]
            for r in chosen}, ""


def summarize(values: List[float], ci95: bool) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    if ci95:
        return f"{mean:.2f}% +- {1.96 * std / math.sqrt(len(values)):.2f}% (95% CI)"
    return f"{mean:.2f}% +- {std:.2f}%"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="parse_results.py", description=__doc__, allow_abbrev=False)
    p.add_argument("directory", nargs="?", help="folder with one sub-folder per seed")
    p.add_argument("--keyword", default="accuracy", help="result line to read: accuracy, macro_f1, mAP, ...")
    p.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    p.add_argument("--base", help="base-class test folder (base-to-novel)")
    p.add_argument("--new", help="novel-class test folder (base-to-novel)")
    p.add_argument("--group", type=int, help="average only group N of a folder that mixes experiments")
    args = p.parse_args(argv)
    if args.base or args.new:
        if not (args.base and args.new):
            print("error: --base and --new go together", file=sys.stderr)
            return 2
        b, err_b = select(Path(args.base), args.keyword, args.group, args.base)
        n, err_n = select(Path(args.new), args.keyword, args.group, args.new)
        if b is None or n is None:
            print(f"error: {err_b or err_n}", file=sys.stderr)
            return 1
        mb, mn = statistics.mean(b.values()), statistics.mean(n.values())
        hm = 2 * mb * mn / (mb + mn) if mb + mn > 0 else 0.0
        print(f"base {mb:.2f}%  novel {mn:.2f}%  HM {hm:.2f}%  ({len(b)} / {plural(len(n), 'run')})")
        return 0
    if not args.directory:
        p.print_usage(sys.stderr)
        return 2
    d = Path(args.directory)
    if not d.is_dir():
        print(f"error: {d} is not a folder", file=sys.stderr)
        return 2
    res, err = select(d, args.keyword, args.group, str(d))
    if res is None:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for run, v in res.items():
        print(f"{run}: {args.keyword} {v:.2f}%")
    print(f"=> {args.keyword}: {summarize(list(res.values()), args.ci95)} over {plural(len(res), 'run')}")
    return 0
