"""``tools/sweep.py``: a paper table as a YAML spec, expanded into train.py runs and run as a queue.

A spec (``configs/sweeps/*.yaml``) names a setting, the methods (each a trainer, a config file, an
optional ``--mode`` and extra ``KEY VALUE`` options), the datasets, shots and seeds. Every run is the
``python train.py ...`` command a user would type, writing into upstream's output layout (the one
``dapt/tools/runs.py`` reads back):

    few_shot/<dataset>/<method>/<cfg>/<N>shots/seed<S>
    base2new/train_base/<dataset>/shots_<N>/<method>/<cfg>/seed<S>  then  base2new/test_new/...
    xd/train/<source>/<method>/<cfg>/seed<S>  then  xd/test/<target>/<method>/<cfg>/seed<S> per target
    data_efficient/<dataset>/<method>/<cfg>/ratio<R>/seed<S>

A job is one run, or a training run and the evaluations that load its prompts (base-to-novel,
cross-dataset); a job's steps run in order on one GPU. A PromptKD method may name its teacher
(``teacher: <a PromptSRC method of the spec>``): its TRAINER.PROMPTKD.TEACHER_CKPT is that method's
last (or best) checkpoint of the same dataset, shots and seed, and its steps join the teacher's job,
after the teacher's, so the student never starts before its teacher finished. ``dataset_opts``
(``{<dataset>: [KEY, VALUE, ...]}``) adds a method's options for one dataset (few-shot, base-to-novel);
``opts`` and ``novel_opts`` may be given per setting (``{few_shot: [...], base2new: [...]}``).
``default_methods`` (names) are the methods run when none are asked for (``--methods`` runs any of
the spec's). A method's ``requires_keys`` are config keys it sets: while this version of dapt lacks
one, the method is left out with a note (the rest of the spec runs). A step whose log already has its test
result is skipped when its saved config.yaml equals the config the spec builds now, and reported
as stale otherwise (never overwritten). A failed step is reported with its log path and the sweep
goes on with the other jobs.
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Dict, List, Optional, Sequence, Tuple

from dapt.config import flatten
from dapt.tools.runs import read_run

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SWEEPS_DIR = REPO / "configs" / "sweeps"
SETTINGS = ("few_shot", "base2new", "xd", "data_efficient")
SPEC_KEYS = {"name", "title", "setting", "description", "seeds", "shots", "ratios", "datasets", "methods", "opts",
             "source", "targets", "novel_opts", "table", "requires_keys", "notes", "default_methods"}
METHOD_KEYS = {"name", "trainer", "config", "mode", "opts", "novel_opts", "eval_only", "not_run", "mask_store", "note",
               "teacher", "dataset_opts", "requires_keys"}


class SpecError(ValueError):
    """A spec that cannot be expanded: the message names the file and the key."""


@dataclass
class Step:
    """One train.py invocation."""

    argv: List[str]  # train.py's arguments
    output_dir: str  # as in argv (relative to the repository, where train.py runs)
    config_files: List[str]  # the config files it reads (relative to the repo, or absolute)

    def command(self, python: str = "python") -> str:
        return " ".join([python, "train.py"] + [shlex.quote(a) for a in self.argv])


@dataclass
class Job:
    """Steps that run in order on one device (train, then the evaluations that load its prompts)."""

    name: str  # method / dataset / shots / seed, for the summary
    method: str
    steps: List[Step]
    missing: List[str] = field(default_factory=list)  # config files that do not exist


@dataclass
class Spec:
    path: str
    data: dict

    @property
    def name(self) -> str:
        return str(self.data.get("name") or Path(self.path).stem)


def _err(spec_path: str, msg: str) -> SpecError:
    return SpecError(f"{spec_path}: {msg}")


def load_spec(path: str) -> Spec:
    import yaml

    p = Path(path)
    if not p.is_file():
        alt = SWEEPS_DIR / p.name if p.suffix else SWEEPS_DIR / f"{p.name}.yaml"
        if alt.is_file():
            p = alt
        else:
            raise SpecError(f"{path}: no such spec; the shipped specs are in {SWEEPS_DIR}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{p}: a spec is a YAML mapping (setting, methods, datasets, ...)")
    check_spec(str(p), data)
    return Spec(str(p), data)


def check_spec(path: str, data: dict) -> None:
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise _err(path, f"unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(SPEC_KEYS))}")
    settings = data.get("setting") if isinstance(data.get("setting"), list) else [data.get("setting")]
    if not settings or any(s not in SETTINGS for s in settings):
        raise _err(path, f"setting '{data.get('setting')}' must be one (or a list) of {', '.join(SETTINGS)}")
    for key in ("shots",):
        if isinstance(data.get(key), dict) and set(data[key]) - set(settings):
            raise _err(path, f"{key}: per-setting keys {', '.join(sorted(set(data[key]) - set(settings)))} "
                             f"are not among the spec's settings")
    if not isinstance(data.get("methods"), list) or not data["methods"]:
        raise _err(path, "methods: a list of {name, trainer, config, ...} is required")
    names = set()
    for i, m in enumerate(data["methods"]):
        if not isinstance(m, dict) or "name" not in m:
            raise _err(path, f"methods[{i}]: each method is a mapping with a name")
        bad = set(m) - METHOD_KEYS
        if bad:
            raise _err(path, f"methods[{i}] ({m['name']}): unknown key(s) {', '.join(sorted(bad))}; "
                             f"valid: {', '.join(sorted(METHOD_KEYS))}")
        if m["name"] in names:
            raise _err(path, f"methods: the name '{m['name']}' is used twice (names are output folders)")
        names.add(m["name"])
        if "/" in str(m["name"]) or " " in str(m["name"]):
            raise _err(path, f"methods[{i}]: name '{m['name']}' becomes a folder: no '/' or spaces")
        if not m.get("not_run") and not (m.get("trainer") and m.get("config")):
            raise _err(path, f"methods[{i}] ({m['name']}): trainer and config are required (or not_run: true)")
        if isinstance(m.get("config"), dict) and set(settings) - set(m["config"]):
            raise _err(path, f"methods[{i}] ({m['name']}): config has no entry for setting(s) "
                             f"{', '.join(sorted(set(settings) - set(m['config'])))}")
        ds_names = {_dataset(e)[0] for e in data.get("datasets") or []}
        if not isinstance(m.get("dataset_opts", {}), dict) or set(m.get("dataset_opts") or {}) - ds_names:
            raise _err(path, f"methods[{i}] ({m['name']}): dataset_opts maps datasets of the spec "
                             f"({', '.join(sorted(ds_names))}) to KEY VALUE pairs")
        if not (_pairs(m.get("opts")) and _pairs(m.get("novel_opts")) and _pairs(m.get("dataset_opts"))):
            raise _err(path, f"methods[{i}] ({m['name']}): opts / novel_opts must be KEY VALUE pairs "
                             "(a list, or one list per setting)")
    by_name = {m["name"]: m for m in data["methods"]}
    default = data.get("default_methods")
    if default is not None and (not isinstance(default, list) or not default or set(default) - set(by_name)):
        raise _err(path, f"default_methods: a list of method names of the spec ({', '.join(by_name)})")
    for i, m in enumerate(data["methods"]):
        if "teacher" not in m:
            continue
        t = by_name.get(m["teacher"])
        if m.get("trainer") != "PromptKD":
            raise _err(path, f"methods[{i}] ({m['name']}): teacher sets TRAINER.PROMPTKD.TEACHER_CKPT; "
                             "only a PromptKD method has one")
        if t is None or t is m or t.get("trainer") != "PromptSRC" or t.get("not_run") or t.get("eval_only") \
                or t.get("teacher"):
            raise _err(path, f"methods[{i}] ({m['name']}): teacher '{m['teacher']}' must name another method of the "
                             "spec that trains with the PromptSRC trainer")
    if len(data.get("opts", []) or []) % 2 or len(data.get("novel_opts", []) or []) % 2:
        raise _err(path, "opts / novel_opts must be KEY VALUE pairs")
    if "xd" in settings and not (data.get("source") and data.get("targets")):
        raise _err(path, "setting xd needs source (the training dataset) and targets (the evaluated datasets)")
    if settings != ["xd"] and not data.get("datasets"):
        raise _err(path, "datasets: a list of dataset names (configs/datasets/<name>.yaml) is required")
    if "data_efficient" in settings and not data.get("ratios"):
        raise _err(path, "setting data_efficient needs ratios (fractions of the training set)")


def _pairs(value) -> bool:
    """KEY VALUE pairs: a list of even length, or {setting: such a list}."""
    lists = value.values() if isinstance(value, dict) else [value]
    return all(len(v or []) % 2 == 0 for v in lists)


def missing_keys(data: dict) -> List[str]:
    """The ``requires_keys`` of a spec (or of one method) that the config defaults lack (a feature not
    in this version)."""
    wanted = data.get("requires_keys", []) or []
    if not wanted:
        return []
    from dapt.config import all_keys, get_cfg_default

    keys = set(all_keys(get_cfg_default()))
    return [k for k in wanted if k not in keys]


def _per_setting(value, setting: str):
    """A spec value given once, or per setting as {few_shot: ..., base2new: ...}."""
    return value[setting] if isinstance(value, dict) else value


def _dataset(entry) -> Tuple[str, str, List[str]]:
    """-> (label, config file, opts). ``entry``: a name, or {name, config, opts}."""
    if isinstance(entry, str):
        return entry, f"configs/datasets/{entry}.yaml", []
    name = str(entry["name"])
    return name, str(entry.get("config", f"configs/datasets/{name}.yaml")), [str(x) for x in entry.get("opts", [])]


def _exists(path: str) -> bool:
    return Path(path).is_file() or (REPO / path).is_file()


def _rel_to_repo(path: str) -> str:
    """train.py runs in the repository: a path given from here, relative to the repository when inside it."""
    a = os.path.abspath(path)
    try:
        return os.path.relpath(a, REPO) if Path(a).is_relative_to(REPO) else a
    except AttributeError:  # Python < 3.9
        return a


def _abs_dir(path: str) -> str:
    return path if os.path.isabs(path) else str(REPO / path)


def _abs(path: str) -> str:
    return path if Path(path).is_absolute() or Path(path).is_file() else str(REPO / path)


def build_cfg(argv: Sequence[str]):
    """The config train.py builds from these arguments."""
    from dapt.cli import build_parser, setup_cfg

    args = build_parser().parse_args([_abs(a) if i > 0 and argv[i - 1].endswith("config-file") else a
                                      for i, a in enumerate(argv)])
    return setup_cfg(args)


_EPOCHS: Dict[tuple, Optional[int]] = {}


def _load_epoch(argv: Sequence[str]) -> Optional[int]:
    """--load-epoch for the evaluations: the last epoch, or None (best model) with TEST.FINAL_MODEL best_val."""
    key = tuple(a for i, a in enumerate(argv) if i == 0 or argv[i - 1] not in ("--seed", "--output-dir"))
    if key not in _EPOCHS:
        cfg = build_cfg(argv)
        _EPOCHS[key] = None if cfg.TEST.FINAL_MODEL == "best_val" else int(cfg.OPTIM.MAX_EPOCH)
    return _EPOCHS[key]


def expand(spec: Spec, output_root: str, data_root: str = "", seeds: Optional[List[int]] = None,
           datasets: Optional[List[str]] = None, methods: Optional[List[str]] = None,
           mask_stores: Optional[Dict[str, str]] = None) -> Tuple[List[Job], List[str]]:
    """-> (jobs, notes on methods left out). ``mask_stores``: method name -> DAPT.MASK.STORE."""
    d = spec.data
    lacking = missing_keys(d)
    if lacking:
        raise _err(spec.path, f"needs config key(s) {', '.join(lacking)}, which this version of dapt does not have")
    if isinstance(d["setting"], list):  # one spec, several settings (ablation tables: few-shot and base-to-novel)
        jobs_all: List[Job] = []
        notes_all: List[str] = []
        for s in d["setting"]:
            sub = dict(d, setting=s, shots=_per_setting(d.get("shots", [16]), s))
            j, n = expand(Spec(spec.path, sub), output_root, data_root, seeds, datasets, methods, mask_stores)
            jobs_all += j
            notes_all += [x for x in n if x not in notes_all]
        return jobs_all, notes_all
    setting = d["setting"]
    output_root = _rel_to_repo(output_root)
    data_root = _rel_to_repo(data_root) if data_root else ""
    seeds = seeds or [int(s) for s in d.get("seeds", [1, 2, 3])]
    shots_list = [int(s) for s in d.get("shots", [16])]
    common = [str(x) for x in d.get("opts", []) or []]
    novel = [str(x) for x in d.get("novel_opts", []) or []]
    mask_stores = mask_stores or {}
    notes: List[str] = []
    jobs: List[Job] = []
    ds_entries = [_dataset(e) for e in d.get("datasets", []) or []]
    if datasets:
        known = {e[0] for e in ds_entries} | ({_dataset(d["source"])[0]} if setting == "xd" else set())
        bad = [x for x in datasets if x not in known]
        if bad:
            raise _err(spec.path, f"--datasets {' '.join(bad)}: not in the spec ({', '.join(sorted(known))})")
        ds_entries = [e for e in ds_entries if e[0] in datasets]
    all_methods = d["methods"]
    methods = methods or d.get("default_methods")
    if methods:
        bad = [x for x in methods if x not in {m["name"] for m in all_methods}]
        if bad:
            raise _err(spec.path, f"--methods {' '.join(bad)}: not in the spec "
                                  f"({', '.join(m['name'] for m in all_methods)})")
        wanted = set(methods) | {m["teacher"] for m in all_methods if m["name"] in methods and m.get("teacher")}
        all_methods = [m for m in all_methods if m["name"] in wanted]
    # students after their teachers: (teacher, dataset, shots, seed) -> (teacher's job, training argv, output)
    all_methods = sorted(all_methods, key=lambda m: bool(m.get("teacher")))
    trained: Dict[tuple, Tuple[Job, List[str], str]] = {}
    for m in all_methods:
        name = str(m["name"])
        if m.get("not_run"):
            notes.append(f"{name}: not run ({m.get('note', 'no implementation here')}); "
                         "the table shows the paper's numbers")
            continue
        lacking_m = missing_keys(m)
        if lacking_m:
            notes.append(f"{name}: not run: needs config key(s) {', '.join(lacking_m)}, which this version of dapt "
                         "does not have")
            continue
        if m.get("teacher") and not any(k[0] == m["teacher"] for k in trained):
            notes.append(f"{name}: not run: its teacher {m['teacher']} is not run")
            continue
        mopts = [str(x) for x in _per_setting(m.get("opts", []), setting) or []]
        # options of the evaluation steps only (base-to-novel novel test, cross-dataset targets)
        novel_m = novel + [str(x) for x in _per_setting(m.get("novel_opts", []), setting) or []]
        if m.get("mask_store"):
            store = mask_stores.get(name)
            if not store:
                notes.append(f"{name}: not run: needs a mask store ({m['mask_store']}); "
                             f"pass --mask-store {name}=<store name under <dataset>/masks/>")
                continue
            mopts += ["DAPT.MASK.STORE", store]
        cfg_file = str(_per_setting(m["config"], setting))
        cfg_name = Path(cfg_file).stem
        head = ["--seed"]

        def argv_for(seed, ds_cfg, out, extra, eval_only=False, model_dir="", load_epoch=None, mode=True):
            a = []
            if data_root:
                a += ["--root", data_root]
            a += head + [str(seed), "--trainer", str(m["trainer"])]
            if m.get("mode") and mode:
                a += ["--mode", str(m["mode"])]
            a += ["--dataset-config-file", ds_cfg, "--config-file", cfg_file, "--output-dir", out]
            if model_dir:
                a += ["--model-dir", model_dir]
                if load_epoch is not None:
                    a += ["--load-epoch", str(load_epoch)]
            if eval_only:
                a += ["--eval-only"]
            return a + extra

        def teacher_opts(key) -> List[str]:
            """TEACHER_CKPT of a student: the teacher run's last checkpoint (best with FINAL_MODEL best_val)."""
            if not m.get("teacher"):
                return []
            tjob, targv, tout = trained[(m["teacher"],) + key]
            epoch = None if tjob.missing else _load_epoch(targv)
            from dapt.trainers.promptsrc import PromptSRC

            ckpt = f"model.pth.tar-{epoch}" if epoch is not None else "model-best.pth.tar"
            return ["TRAINER.PROMPTKD.TEACHER_CKPT", os.path.join(tout, PromptSRC.checkpoint_name, ckpt)]

        def add(job: Job, key, train_argv: List[str], train_out: str) -> None:
            """A teacher's job is remembered; a student's steps join its teacher's job."""
            if not m.get("teacher"):
                trained[(name,) + key] = (job, train_argv, train_out)
                jobs.append(job)
                return
            tjob = trained[(m["teacher"],) + key][0]
            tjob.name += f" + {name}"
            tjob.steps += job.steps
            tjob.missing = sorted(set(tjob.missing) | set(job.missing))

        eval_only = bool(m.get("eval_only"))
        missing = [f for f in (cfg_file,) if not _exists(f)]
        for seed in seeds:
            if setting == "xd":
                src, src_cfg, src_opts = _dataset(d["source"])
                shots = shots_list[0]
                train_out = os.path.join(output_root, "xd", "train", src, name, cfg_name, f"seed{seed}")
                key = (src, shots, seed)
                mopts_s = mopts + teacher_opts(key)
                train_argv = argv_for(seed, src_cfg, train_out,
                                      ["DATASET.NUM_SHOTS", str(shots)] + src_opts + common + mopts_s, eval_only)
                steps = [Step(train_argv, train_out, [src_cfg, cfg_file])]
                epoch = None if missing or eval_only else _load_epoch(train_argv)
                targets = [_dataset(t) for t in d["targets"]]
                if datasets:
                    targets = [t for t in targets if t[0] in datasets] or targets
                for tgt, tgt_cfg, tgt_opts in targets:
                    out = os.path.join(output_root, "xd", "test", tgt, name, cfg_name, f"seed{seed}")
                    a = argv_for(seed, tgt_cfg, out, tgt_opts + common + mopts_s + novel_m, True,
                                 "" if eval_only else train_out, epoch, mode=False)
                    steps.append(Step(a, out, [tgt_cfg, cfg_file]))
                missing_all = missing + [f for s in steps for f in s.config_files[:1] if not _exists(f)]
                add(Job(f"{name}/{src}/seed{seed}", name, steps, sorted(set(missing_all))), key, train_argv, train_out)
                continue
            for ds, ds_cfg, ds_opts in ds_entries:
                miss = missing + ([ds_cfg] if not _exists(ds_cfg) else [])
                if setting == "data_efficient":
                    for ratio in d["ratios"]:
                        out = os.path.join(output_root, "data_efficient", ds, name, cfg_name, f"ratio{ratio:g}",
                                           f"seed{seed}")
                        key = (ds, f"ratio{ratio:g}", seed)
                        # a float literal: yacs refuses "1" for the float key
                        a = argv_for(seed, ds_cfg, out, ["DATASET.NUM_SHOTS", "-1", "DATASET.SELECTION_RATIO",
                                                         repr(float(ratio))] + ds_opts + common + mopts
                                     + teacher_opts(key), eval_only)
                        add(Job(f"{name}/{ds}/ratio{ratio:g}/seed{seed}", name, [Step(a, out, [ds_cfg, cfg_file])],
                                miss), key, a, out)
                    continue
                for shots in shots_list:
                    key = (ds, shots, seed)
                    mopts_s = mopts + [str(x) for x in (m.get("dataset_opts") or {}).get(ds, [])] + teacher_opts(key)
                    if setting == "few_shot":
                        out = os.path.join(output_root, "few_shot", ds, name, cfg_name, f"{shots}shots", f"seed{seed}")
                        a = argv_for(seed, ds_cfg, out, ["DATASET.NUM_SHOTS", str(shots)] + ds_opts + common + mopts_s,
                                     eval_only)
                        add(Job(f"{name}/{ds}/{shots}shots/seed{seed}", name, [Step(a, out, [ds_cfg, cfg_file])], miss),
                            key, a, out)
                        continue
                    # base2new
                    sub = ["DATASET.NUM_SHOTS", str(shots)]
                    base_out = os.path.join(output_root, "base2new", "train_base", ds, f"shots_{shots}", name,
                                            cfg_name, f"seed{seed}")
                    new_out = os.path.join(output_root, "base2new", "test_new", ds, f"shots_{shots}", name,
                                           cfg_name, f"seed{seed}")
                    base_argv = argv_for(seed, ds_cfg, base_out,
                                         sub + ["DATASET.SUBSAMPLE_CLASSES", "base"] + ds_opts + common + mopts_s,
                                         eval_only)
                    epoch = None if miss or eval_only else _load_epoch(base_argv)
                    new_argv = argv_for(seed, ds_cfg, new_out,
                                        sub + ["DATASET.SUBSAMPLE_CLASSES", "new"] + ds_opts + common + mopts_s
                                        + novel_m, True, "" if eval_only else base_out, epoch, mode=False)
                    add(Job(f"{name}/{ds}/shots_{shots}/seed{seed}", name,
                            [Step(base_argv, base_out, [ds_cfg, cfg_file]), Step(new_argv, new_out, [ds_cfg, cfg_file])],
                            miss), key, base_argv, base_out)
    return jobs, notes


# ---------------------------------------------------------------------------------------- status
def step_status(step: Step) -> Tuple[str, str]:
    """-> (status, detail): done | stale | partial (started, no result) | todo."""
    out = Path(_abs_dir(step.output_dir))
    if not out.is_dir() or not any(out.glob("log.txt*")):
        return "todo", ""
    run = read_run(out)
    if not run.finished:
        return "partial", str(run.logs[-1]) if run.logs else ""
    if run.config is None:
        return "stale", f"{out}: finished but has no config.yaml to compare"
    want = flatten(_cfg_dict(build_cfg(step.argv)))
    have = flatten(run.config)
    diff = sorted(k for k in set(want) | set(have) if want.get(k, "<absent>") != have.get(k, "<absent>"))
    if diff:
        shown = ", ".join(f"{k} (saved {have.get(k, '<absent>')!r}, spec {want.get(k, '<absent>')!r})"
                          for k in diff[:4])
        return "stale", f"{out}: saved config differs from the spec's: {shown}" + (" ..." if len(diff) > 4 else "")
    return "done", ""


def _cfg_dict(cfg) -> dict:
    import yaml

    return yaml.safe_load(cfg.dump())


# ---------------------------------------------------------------------------------------- running
@dataclass
class Outcome:
    job: str
    status: str  # done (ran now) | skipped (done before) | stale | failed | blocked | interrupted
    detail: str = ""
    device: str = ""
    seconds: float = 0.0


def _step_logs(step: Step) -> str:
    out = Path(_abs_dir(step.output_dir))
    run_logs = sorted(out.glob("log.txt*"), key=lambda p: (p.name != "log.txt", p.name))
    console = out / "console.txt"
    return str(run_logs[-1] if run_logs else console)


def run_job(job: Job, train_cmd: Sequence[str], env: Optional[dict] = None, device: str = "",
            stop: Optional[threading.Event] = None, procs: Optional[dict] = None) -> Outcome:
    """Run a job's steps in order (skipping finished ones); the train.py console goes to <output>/console.txt."""
    t0 = time.time()
    ran = False
    for step in job.steps:
        status, detail = step_status(step)
        if status == "done":
            continue
        if status == "stale":
            return Outcome(job.name, "stale", detail, device)
        if stop is not None and stop.is_set():
            return Outcome(job.name, "interrupted", "", device)
        out_dir = _abs_dir(step.output_dir)
        os.makedirs(out_dir, exist_ok=True)
        cmd = list(train_cmd) + list(step.argv)
        with open(os.path.join(out_dir, "console.txt"), "a") as console:
            console.write(f"$ {' '.join(shlex.quote(c) for c in cmd)}\n")
            console.flush()
            p = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=console, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            if procs is not None:
                procs[job.name] = p
            rc = p.wait()
            if procs is not None:
                procs.pop(job.name, None)
        ran = True
        if stop is not None and stop.is_set():
            return Outcome(job.name, "interrupted", _step_logs(step), device)
        if rc != 0 or not read_run(Path(out_dir)).finished:
            return Outcome(job.name, "failed", f"exit code {rc}; log: {_step_logs(step)}", device, time.time() - t0)
    return Outcome(job.name, "done" if ran else "skipped", "", device, time.time() - t0)


def parse_gpus(text: Optional[str]) -> List[str]:
    """'0,1' -> ['0', '1']; 'cpu' -> ['cpu']; None -> the visible CUDA devices, or ['cpu']."""
    if text:
        return [g.strip() for g in text.split(",") if g.strip()]
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable torch CUDA: run on the CPU
        n = 0
    return [str(i) for i in range(n)] or ["cpu"]


def device_env(device: str, base: Optional[dict] = None) -> dict:
    env = dict(os.environ if base is None else base)
    env["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else device
    return env


def run_queue(jobs: List[Job], gpus: List[str], per_gpu: int = 1, train_cmd: Optional[Sequence[str]] = None,
              progress=None) -> List[Outcome]:
    """Run jobs over ``per_gpu`` slots per device, each with its own CUDA_VISIBLE_DEVICES.

    Finished jobs are skipped without taking a slot. Ctrl-C / SIGTERM stops the running train.py
    processes (their checkpoints stay; the next sweep resumes them) and returns what happened."""
    train_cmd = list(train_cmd or [sys.executable, "train.py"])
    outcomes: List[Outcome] = []
    pending: "Queue[Job]" = Queue()
    for job in jobs:
        states = [step_status(s) for s in job.steps]
        stale = [d for s, d in states if s == "stale"]
        if stale:
            outcomes.append(Outcome(job.name, "stale", stale[0]))
        elif all(s == "done" for s, _ in states):
            outcomes.append(Outcome(job.name, "skipped"))
        else:
            pending.put(job)
    stop = threading.Event()
    procs: Dict[str, subprocess.Popen] = {}
    lock = threading.Lock()

    def worker(device: str):
        env = device_env(device)
        while not stop.is_set():
            try:
                job = pending.get_nowait()
            except Empty:
                return
            if progress:
                progress(f"start {job.name} on {'cpu' if device == 'cpu' else 'GPU ' + device}")
            out = run_job(job, train_cmd, env, device, stop, procs)
            with lock:
                outcomes.append(out)
            if progress:
                progress(f"{out.status} {job.name}" + (f" ({out.detail})" if out.detail else "")
                         + (f" in {out.seconds:.0f} s" if out.status == "done" else ""))

    threads = [threading.Thread(target=worker, args=(g,), daemon=True) for g in gpus for _ in range(max(1, per_gpu))]
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None

    def on_term(signum, frame):
        raise KeyboardInterrupt

    if previous is not None:
        signal.signal(signal.SIGTERM, on_term)
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
    except KeyboardInterrupt:
        stop.set()
        for p in list(procs.values()):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for t in threads:
            t.join()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    while not pending.empty():
        outcomes.append(Outcome(pending.get_nowait().name, "interrupted"))
    return outcomes


# ---------------------------------------------------------------------------------------- slurm
def _slurm_job(job: Job, train_cmd: List[str]) -> Tuple[str, str, str]:
    """What each Slurm array task runs: the job's steps on the GPU Slurm gave it."""
    out = run_job(job, train_cmd, dict(os.environ), os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    return out.job, out.status, out.detail


def submit_slurm(jobs: List[Job], folder: str, partition: str = "", time_min: int = 240, gpus_per_job: int = 1,
                 cpus_per_job: int = 8, parallel: int = 0, cluster: Optional[str] = None,
                 train_cmd: Optional[Sequence[str]] = None, extra: Optional[dict] = None):
    """Submit the jobs as one Slurm job array through submitit; returns the submitit jobs.

    ``cluster`` "local" (submitit's local executor) runs the array on this machine (tests)."""
    try:
        import submitit
    except ImportError:
        raise SystemExit("error: --slurm needs submitit: pip install -e \".[slurm]\"") from None
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = dict(timeout_min=int(time_min), gpus_per_node=int(gpus_per_job), cpus_per_task=int(cpus_per_job),
                  name="dapt-sweep")
    if partition:
        params["slurm_partition"] = partition
    if parallel:
        params["slurm_array_parallelism"] = int(parallel)
    params.update(extra or {})
    ex.update_parameters(**params)
    cmd = list(train_cmd or [sys.executable, "train.py"])
    return ex.map_array(_slurm_job, jobs, [cmd] * len(jobs))


# ---------------------------------------------------------------------------------------- summary
def summary(outcomes: List[Outcome], notes: List[str]) -> str:
    order = ["done", "skipped", "failed", "stale", "blocked", "interrupted"]
    counts = {k: sum(o.status == k for o in outcomes) for k in order}
    lines = ["sweep summary: " + ", ".join(f"{counts[k]} {k if k != 'done' else 'ran now'}" for k in order
                                          if counts[k] or k in ("done", "skipped", "failed"))]
    for o in outcomes:
        if o.status in ("failed", "stale"):
            lines.append(f"  {o.status}: {o.job}: {o.detail}")
    if counts["stale"]:
        lines.append("  a stale run's saved config differs from the spec's: move its folder away to rerun it")
    for n in notes:
        lines.append(f"  {n}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="sweep.py", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="a sweep spec: configs/sweeps/<name>.yaml (or just its name)")
    p.add_argument("--root", default=os.environ.get("DATA", ""), help="dataset folder passed as --root ($DATA)")
    p.add_argument("--output", default="output", help="output root of the runs (upstream layout below it)")
    p.add_argument("--dry-run", action="store_true", help="print the train.py commands and their status; run nothing")
    p.add_argument("--gpus", default=None, help="GPU ids, e.g. 0,1,2,3, or cpu (default: every visible GPU, else cpu)")
    p.add_argument("--per-gpu", type=int, default=1, help="runs at a time on each GPU")
    p.add_argument("--seeds", type=int, nargs="+", help="only these seeds")
    p.add_argument("--datasets", nargs="+", help="only these datasets (labels of the spec)")
    p.add_argument("--methods", nargs="+", help="only these methods (names of the spec)")
    p.add_argument("--mask-store", action="append", default=[], metavar="METHOD=STORE",
                   help="DAPT.MASK.STORE for a method that needs one (Table 8: CLIP-ES=clip_es)")
    p.add_argument("--python", default=sys.executable, help="the Python that runs train.py")
    p.add_argument("--slurm", action="store_true", help="submit the runs as a Slurm job array (submitit)")
    p.add_argument("--partition", default="", help="Slurm partition")
    p.add_argument("--time", type=int, default=240, help="Slurm time limit per array task, minutes")
    p.add_argument("--gpus-per-job", type=int, default=1, help="Slurm GPUs per array task")
    p.add_argument("--cpus-per-job", type=int, default=8, help="Slurm CPUs per array task")
    p.add_argument("--array-parallelism", type=int, default=0, help="Slurm: at most this many tasks at once")
    p.add_argument("--wait", action="store_true", help="Slurm: wait for the array and print the summary")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    stores = {}
    for item in args.mask_store:
        if "=" not in item:
            print(f"error: --mask-store {item}: expected METHOD=STORE", file=sys.stderr)
            return 2
        k, v = item.split("=", 1)
        stores[k] = v
    try:
        spec = load_spec(args.spec)
        from dapt.config import ConfigError

        jobs, notes = expand(spec, args.output, args.root, args.seeds, args.datasets, args.methods, stores)
    except (SpecError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = sorted({f for j in jobs for f in j.missing})
    if missing:
        skipped = sorted({j.method for j in jobs if j.missing})
        jobs = [j for j in jobs if not j.missing]
        notes.append(f"left out (config file missing: {', '.join(missing)}): {', '.join(skipped)}")
    if args.dry_run:
        from dapt.config import ConfigError

        for job in jobs:
            for step in job.steps:
                try:
                    status, detail = step_status(step)
                except ConfigError as exc:
                    print(f"error: {spec.path}: {job.name}: {exc}", file=sys.stderr)
                    return 2
                print(f"# {job.name}: {status}" + (f" ({detail})" if detail else ""))
                print(step.command("python"))
        n_steps = sum(len(j.steps) for j in jobs)
        print(f"# {len(jobs)} job(s), {n_steps} train.py run(s)")
        for n in notes:
            print(f"# {n}")
        return 0
    train_cmd = [args.python, "train.py"]
    if args.slurm:
        todo = [j for j in jobs if any(step_status(s)[0] != "done" for s in j.steps)]
        if not todo:
            print(summary([Outcome(j.name, "skipped") for j in jobs], notes))
            return 0
        folder = os.path.join(args.output, "slurm", spec.name)
        sj = submit_slurm(todo, folder, args.partition, args.time, args.gpus_per_job, args.cpus_per_job,
                          args.array_parallelism, train_cmd=train_cmd)
        print(f"submitted {len(sj)} array task(s) as Slurm job {sj[0].job_id.split('_')[0]}; logs in {folder}")
        if not args.wait:
            return 0
        outcomes = [Outcome(*j.result()) for j in sj]
    else:
        gpus = parse_gpus(args.gpus)
        print(f"{len(jobs)} job(s) on {', '.join('cpu' if g == 'cpu' else 'GPU ' + g for g in gpus)} "
              f"({args.per_gpu} per device)", flush=True)
        t0 = time.time()
        outcomes = run_queue(jobs, gpus, args.per_gpu, train_cmd,
                             progress=lambda msg: print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True))
    print(summary(outcomes, notes))
    bad = any(o.status in ("failed", "stale", "interrupted") for o in outcomes)
    return 1 if bad else 0
