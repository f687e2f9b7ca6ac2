"""tools/sweep.py and tools/tables.py: spec expansion, the GPU queue, Slurm through submitit's local
executor, and an interrupted-and-resumed testbed sweep whose table equals the logged accuracies."""
import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from dapt.tools import sweep
from dapt.tools.runs import find_runs
from dapt.tools.tables import harmonic_mean, load_paper_numbers

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))

# A stand-in for train.py: records its CUDA_VISIBLE_DEVICES and start/end times, sleeps, and writes a
# log with a test result (or fails when its output folder name contains "fail").
FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys, time
    out = sys.argv[sys.argv.index("--output-dir") + 1]
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0.6")))
    rec = {"out": out, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": t0, "end": time.time()}
    with open(os.path.join(os.environ["FAKE_RECORD"], os.path.basename(out) + ".json"), "w") as f:
        json.dump(rec, f)
    if "fail" in out:
        print("error: something went wrong", file=sys.stderr)
        sys.exit(3)
    with open(os.path.join(out, "log.txt"), "w") as f:
        f.write("Evaluate on the *test* set\\n=> result\\n* total: 10\\n* accuracy: 50.0%\\n")
""")


PER_RUN_FLAGS = ("--seed", "--output-dir", "--model-dir", "--load-epoch", "--dataset-config-file")


def test_specs_expand_to_valid_train_commands(capsys):
    """Every shipped spec expands; every command's config files exist and every KEY is a valid key
    (train.py's own config builder runs on it). Methods whose config file is not in this checkout
    yet (PromptSRC / PromptKD) and specs needing keys this version lacks are skipped, by name."""
    from dapt.config import ConfigError

    assert len(SPECS) >= 17
    paper = load_paper_numbers()
    checked, skipped, built = 0, [], set()
    for path in SPECS:
        spec = sweep.load_spec(str(path))
        lacking = sweep.missing_keys(spec.data)
        if lacking:
            skipped.append(f"{path.name}: needs {', '.join(lacking)}")
            continue
        # every method, also those a spec runs only on request (not in its default_methods)
        jobs, notes = sweep.expand(spec, "/tmp/out", "/data", methods=[m["name"] for m in spec.data["methods"]])
        outs = [s.output_dir for j in jobs for s in j.steps]
        assert len(outs) == len(set(outs)), f"{path.name}: two runs share an output folder"
        for job in jobs:
            if job.missing:
                skipped.append(f"{path.name}: {job.method} ({', '.join(job.missing)})")
                continue
            for step in job.steps:
                assert all((REPO / f).is_file() for f in step.config_files), (path.name, step.config_files)
                assert step.command().startswith("python train.py --root /data --seed ")
                # runs that differ only in seed, folders or dataset have the same keys: build one config
                # per kind, and each dataset config at least once
                kind = tuple(a for i, a in enumerate(step.argv) if i == 0 or step.argv[i - 1] not in PER_RUN_FLAGS)
                ds = step.argv[step.argv.index("--dataset-config-file") + 1]
                checked += 1
                if kind in built and ds in built:
                    continue
                built.add(ds)
                try:
                    cfg = sweep.build_cfg(step.argv)
                except ConfigError as exc:
                    pytest.fail(f"{path.name}: {job.name}: {exc}")
                assert cfg.OUTPUT_DIR == step.output_dir
                built.add(kind)
        table = spec.data.get("table")
        if table:  # the paper table it cites exists, and its rows are the paper's rows or our methods
            for sub in table.get("tables", [table]):
                if sub.get("paper"):
                    pub = paper[sub["paper"]]
                    labels = [c["label"] for c in sub.get("columns", [])]
                    assert set(labels) <= set(map(str, pub["columns"])), (path.name, labels)
    skipped = sorted(set(skipped))
    print("skipped (config file or key not in this checkout):\n  " + "\n  ".join(skipped))
    assert checked > 2000 and len(built) > 50
    # only the methods helper D is adding, and the data-selection keys, may be skipped
    assert all(("PromptSRC" in s or "PromptKD" in s or "SELECTION" in s) for s in skipped), skipped


def test_official_spec_scores_novel_classes_with_32_background_columns():
    spec = sweep.load_spec("T1_base2new_official")
    jobs, _ = sweep.expand(spec, "out")
    off = [j for j in jobs if j.method == "DAPT-S-official"]
    assert len(off) == 33
    for j in off[:3]:
        base, new = (sweep.build_cfg(s.argv) for s in j.steps)
        assert base.DAPT.BG.EVAL_EXTRA == 7 and base.DATASET.SUBSAMPLE_CLASSES == "base"
        assert new.DAPT.BG.EVAL_EXTRA == 32 and new.DATASET.SUBSAMPLE_CLASSES == "new" and new.DAPT.ENABLED
        assert "--eval-only" in j.steps[1].argv and j.steps[1].argv[j.steps[1].argv.index("--model-dir") + 1] == \
            j.steps[0].output_dir


def test_paper_numbers_hm_recompute():
    """The typed-in published numbers: HM = 2BN/(B+N) of the printed Base and Novel, to the printed
    precision. Not where the paper's own HM does not recompute: T4 DAPT-G, the MaPLe baseline of the
    ablations (T5/T9) and T10 (off by 0.02-0.05, presumably means of per-dataset HMs)."""
    paper = load_paper_numbers()
    for tid in ("T1", "T4", "T5", "T8", "T9", "T12"):
        cols = paper[tid]["columns"]
        b, n, h = cols.index("Base"), cols.index("Novel"), cols.index("HM")
        for row, v in paper[tid]["rows"].items():
            if (tid, row) in (("T4", "DAPT-G"), ("T5", "baseline"), ("T9", "baseline")) \
                    or row in (paper[tid].get("deltas") or {}):
                continue
            assert abs(harmonic_mean(v[b], v[n]) - v[h]) < 0.011, (tid, row)


def _fake_jobs(tmp_path, names):
    jobs = []
    for name in names:
        out = str(tmp_path / "runs" / name)
        jobs.append(sweep.Job(name, "fake", [sweep.Step(["--output-dir", out], out, [])]))
    return jobs


def test_queue_two_gpus_one_run_each_and_a_failure(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    rec = tmp_path / "rec"
    rec.mkdir()
    monkeypatch.setenv("FAKE_RECORD", str(rec))
    # finished steps are compared with the config the spec builds: the fake runs have none, so
    # skip that comparison here (it is exercised by the end-to-end test below)
    monkeypatch.setattr(sweep, "step_status", lambda step: ("todo", "") if not list(
        Path(step.output_dir).glob("log.txt")) else ("done", ""))
    jobs = _fake_jobs(tmp_path, ["a", "b", "c", "fail_d", "e"])
    outcomes = sweep.run_queue(jobs, ["0", "1"], per_gpu=1, train_cmd=[sys.executable, str(script)])
    by = {o.job: o for o in outcomes}
    assert {k: v.status for k, v in by.items()} == {"a": "done", "b": "done", "c": "done", "fail_d": "failed",
                                                    "e": "done"}
    console = tmp_path / "runs" / "fail_d" / "console.txt"
    assert "exit code 3" in by["fail_d"].detail and str(console) in by["fail_d"].detail
    assert "something went wrong" in (tmp_path / "runs" / "fail_d" / "console.txt").read_text()
    recs = [json.loads(p.read_text()) for p in rec.glob("*.json")]
    assert len(recs) == 5 and {r["cuda"] for r in recs} == {"0", "1"}
    events = sorted([(r["start"], 1) for r in recs] + [(r["end"], -1) for r in recs])
    in_flight, peak = 0, 0
    for _, d in events:
        in_flight += d
        peak = max(peak, in_flight)
    assert peak == 2
    for r in recs:  # runs overlapping in time never share a GPU
        for s in recs:
            if r is not s and r["start"] < s["end"] and s["start"] < r["end"]:
                assert r["cuda"] != s["cuda"]
    text = sweep.summary(outcomes, [])
    assert "4 ran now" in text and "1 failed" in text and "fail_d" in text
    # a second pass skips what finished and retries only the failure
    outcomes = sweep.run_queue(jobs, ["0", "1"], per_gpu=1, train_cmd=[sys.executable, str(script)])
    assert sorted(o.status for o in outcomes) == ["failed", "skipped", "skipped", "skipped", "skipped"]


def test_slurm_array_through_submitit_local_executor(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    rec = tmp_path / "rec"
    rec.mkdir()
    monkeypatch.setenv("FAKE_RECORD", str(rec))
    monkeypatch.setenv("FAKE_SLEEP", "0")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    jobs = _fake_jobs(tmp_path, ["s1", "s2", "fail_s3"])
    sj = sweep.submit_slurm(jobs, str(tmp_path / "slurm"), partition="", time_min=5, gpus_per_job=0, cpus_per_job=1,
                            cluster="local", train_cmd=[sys.executable, str(script)])
    assert len(sj) == 3
    results = {j.result()[0]: j.result()[1] for j in sj}
    # the fake runs have no config.yaml, so a finished one reads as stale to the config check:
    # what matters here is that each array task ran its job and reported it
    assert results["fail_s3"] == "failed" and results["s1"] in ("done", "stale") and results["s2"] in ("done", "stale")
    assert sorted(p.stem for p in rec.glob("*.json")) == ["fail_s3", "s1", "s2"]


# ------------------------------------------------------------------------------------ end to end
E2E_SPEC = {
    "name": "e2e",
    "title": "testbed sweep",
    "setting": "few_shot",
    "seeds": [1, 2],
    "shots": [2],
    "datasets": [{"name": "scenes_tiny", "config": "configs/datasets/objects_on_scenes.yaml",
                  "opts": ["DATASET.SCENES.N_TRAIN", "4", "DATASET.SCENES.N_VAL", "2", "DATASET.SCENES.N_TEST", "10",
                           "DATASET.SCENES.NUM_CLASSES", "4", "DATASET.SCENES.P", "0.9"]}],
    "opts": ["OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
             "VERBOSE", "False"],
    "methods": [{"name": "CLIP", "trainer": "ZeroshotCLIP", "config": "configs/trainers/MaPLe/toy_scenes.yaml",
                 "eval_only": True},
                {"name": "MaPLe", "trainer": "MaPLe", "config": "configs/trainers/MaPLe/toy_scenes.yaml"}],
    "table": {"id": "e2e", "tables": [{"title": "tiny", "setting": "few_shot", "shots": 2,
                                       "columns_from": "datasets", "metric": "acc"}]},
}


def _logged_accuracy(run_dir: Path) -> float:
    """The last '* accuracy: X%' line after 'Evaluate on the *test* set', read by hand."""
    text = "\n".join(p.read_text() for p in sorted(run_dir.glob("log.txt*")))
    tail = text.rsplit("Evaluate on the *test* set", 1)[1]
    return float(re.findall(r"^\* accuracy: ([\d.]+)%", tail, re.M)[-1])


def _finished(run_dir: Path) -> bool:
    found = find_runs(run_dir) if run_dir.is_dir() else []
    return bool(found) and found[0].finished


def test_testbed_sweep_interrupted_resumed_and_tabled(tmp_path):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    spec_path = spec_dir / "e2e.yaml"
    spec_path.write_text(yaml.safe_dump(E2E_SPEC))
    out = tmp_path / "out"
    env = dict(os.environ, DAPT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(REPO / "tools" / "sweep.py"), str(spec_path), "--output", str(out), "--gpus", "cpu"]
    runs = [out / "few_shot" / "scenes_tiny" / m / "toy_scenes" / "2shots" / f"seed{s}"
            for m in ("CLIP", "MaPLe") for s in (1, 2)]

    # 1. start, and interrupt (SIGTERM) once two runs have their result
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 400
    while time.time() < deadline and p.poll() is None:
        if sum(1 for r in runs if _finished(r)) >= 2:
            break
        time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    first_out, _ = p.communicate(timeout=120)
    # a run the signal caught early may have a folder but no log yet: it is simply not finished
    finished = [r for r in runs if _finished(r)]
    assert len(finished) >= 2, first_out
    if len(finished) < 4:  # the usual case: the sweep stopped before the end
        assert p.returncode == 1 and "interrupted" in first_out, first_out
    stamps = {r: [(q.name, q.stat().st_mtime_ns) for q in sorted(r.iterdir()) if q.name.startswith("log.txt")]
              for r in finished}

    # 2. resume: finished runs are skipped (their logs untouched), the others run
    r2 = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert f"{len(finished)} skipped" in r2.stdout and f"{4 - len(finished)} ran now" in r2.stdout, r2.stdout
    for r in finished:
        assert [(q.name, q.stat().st_mtime_ns) for q in sorted(r.iterdir()) if q.name.startswith("log.txt")] \
            == stamps[r]
    accs = {r: _logged_accuracy(r) for r in runs}

    # 3. a changed spec makes the finished runs stale, never silently reused
    changed = dict(E2E_SPEC, opts=["OPTIM.MAX_EPOCH", "3"] + E2E_SPEC["opts"][2:])
    jobs, _ = sweep.expand(sweep.Spec(str(spec_path), changed), str(out))
    maple = [j for j in jobs if j.method == "MaPLe"]
    states = [sweep.step_status(j.steps[0]) for j in maple]
    assert all(s == "stale" and "OPTIM.MAX_EPOCH (saved 2, spec 3)" in d for s, d in states), states

    # 4. tables.py: seed means equal the logged accuracies averaged by hand
    r3 = subprocess.run([sys.executable, str(REPO / "tools" / "tables.py"), str(out), "--sweeps", str(spec_dir),
                         "--table", "e2e"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r3.returncode == 0, r3.stderr
    rows = list(csv.DictReader((out / "tables" / "e2e.csv").open()))
    assert len(rows) == 2
    for row in rows:
        method = "CLIP" if row["row"] == "CLIP" else "MaPLe"
        mine = [accs[r] for r in runs if f"/{method}/" in str(r)]
        assert float(row["ours"]) == pytest.approx(statistics.mean(mine), abs=1e-9)
        assert float(row["std"]) == pytest.approx(statistics.stdev(mine), abs=1e-9)
        assert row["seeds"] == "2" and row["expected_seeds"] == "2"
    md = (out / "tables" / "e2e.md").read_text()
    mean_clip = statistics.mean(accs[r] for r in runs if "/CLIP/" in str(r))
    assert f"| CLIP | ours | {mean_clip:.2f} ± " in md


# ------------------------------------------------------------------------------------ teachers
KD_SPEC = {
    "name": "kd", "setting": ["few_shot", "base2new"], "seeds": [1, 2], "shots": {"few_shot": [2], "base2new": [4]},
    "datasets": [{"name": "scenes_tiny", "config": "configs/datasets/objects_on_scenes.yaml",
                  "opts": ["DATASET.SCENES.N_TRAIN", "4", "DATASET.SCENES.N_VAL", "2", "DATASET.SCENES.N_TEST", "6",
                           "DATASET.SCENES.NUM_CLASSES", "4"]}],
    "opts": ["OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "0", "VERBOSE", "False"],
    "methods": [{"name": "KD", "trainer": "PromptKD", "teacher": "SRC", "config": "configs/trainers/PromptKD/toy_scenes.yaml",
                 "opts": {"few_shot": ["TRAINER.MODAL", "cross"], "base2new": []}},
                {"name": "MaPLe", "trainer": "MaPLe", "config": "configs/trainers/MaPLe/toy_scenes.yaml"},
                {"name": "SRC", "trainer": "PromptSRC", "config": "configs/trainers/PromptSRC/toy_scenes.yaml",
                 "opts": ["TRAINER.PROMPTSRC.GPA_MEAN", "2"]}],
}


def test_a_student_runs_in_its_teachers_job_with_its_checkpoint(tmp_path):
    jobs, notes = sweep.expand(sweep.Spec("kd.yaml", KD_SPEC), str(tmp_path / "out"))
    assert not notes
    # one job per teacher run (2 settings x 2 seeds) holding the student's steps after the teacher's, and MaPLe's 4
    kd_jobs = [j for j in jobs if j.method == "SRC"]
    assert len(kd_jobs) == 4 and len([j for j in jobs if j.method == "MaPLe"]) == 4 and len(jobs) == 8
    assert not [j for j in jobs if j.method == "KD"]
    for job in kd_jobs:
        trainers = [s.argv[s.argv.index("--trainer") + 1] for s in job.steps]
        n = len(trainers) // 2
        assert trainers == ["PromptSRC"] * n + ["PromptKD"] * n and job.name.endswith(" + KD")
        teacher_out = job.steps[0].output_dir
        for s in job.steps[n:]:
            cfg = sweep.build_cfg(s.argv)
            # the teacher run of the same setting, dataset, shots and seed: its last epoch's checkpoint
            assert cfg.TRAINER.PROMPTKD.TEACHER_CKPT == os.path.join(teacher_out, "VLPromptLearner", "model.pth.tar-2")
            assert cfg.SEED == sweep.build_cfg(job.steps[0].argv).SEED
            assert cfg.TRAINER.MODAL == ("cross" if "/few_shot/" in s.output_dir else "base2novel")
        seed_dir = os.path.basename(teacher_out)
        assert all(os.path.basename(s.output_dir) == seed_dir for s in job.steps)
    # --methods with a student brings its teacher (its steps must run first), not the other methods
    jobs, _ = sweep.expand(sweep.Spec("kd.yaml", KD_SPEC), "out", methods=["KD"], seeds=[1])
    assert [j.name for j in jobs] == ["SRC/scenes_tiny/2shots/seed1 + KD", "SRC/scenes_tiny/shots_4/seed1 + KD"]


@pytest.mark.parametrize("teacher, msg", [("MaPLe", "must name another method of the spec that trains with the "
                                                    "PromptSRC trainer"),
                                          ("KD", "must name another method"), ("nobody", "must name another method")])
def test_a_bad_teacher_is_one_clear_error(teacher, msg):
    data = dict(KD_SPEC, methods=[dict(KD_SPEC["methods"][0], teacher=teacher)] + KD_SPEC["methods"][1:])
    with pytest.raises(sweep.SpecError, match=msg):
        sweep.check_spec("kd.yaml", data)
    data = dict(KD_SPEC, methods=[dict(KD_SPEC["methods"][1], teacher="SRC")] + KD_SPEC["methods"][2:])
    with pytest.raises(sweep.SpecError, match="only a PromptKD method has one"):
        sweep.check_spec("kd.yaml", data)


@pytest.mark.slow
def test_teacher_then_student_through_the_sweep(tmp_path):
    """The few-shot PromptSRC -> PromptKD job of KD_SPEC on the testbed: the student starts after its
    teacher finished and loads that run's checkpoint; both results are read back."""
    spec = dict(KD_SPEC, setting="few_shot", seeds=[1], shots=[2],
                methods=[m for m in KD_SPEC["methods"] if m["name"] != "MaPLe"])
    spec_path = tmp_path / "kd.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    env = dict(os.environ, DAPT_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(REPO / "tools" / "sweep.py"), str(spec_path), "--output", str(out),
                        "--gpus", "cpu", "--per-gpu", "2"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0 and "1 ran now" in r.stdout, r.stdout + r.stderr
    src = out / "few_shot" / "scenes_tiny" / "SRC" / "toy_scenes" / "2shots" / "seed1"
    kd = out / "few_shot" / "scenes_tiny" / "KD" / "toy_scenes" / "2shots" / "seed1"
    ckpt = src / "VLPromptLearner" / "model.pth.tar-2"
    assert f"Loaded the PromptKD teacher from {ckpt}" in (kd / "log.txt").read_text()
    assert ckpt.stat().st_mtime < min(p.stat().st_mtime for p in kd.glob("log.txt*"))
    runs = {r.method: r for r in find_runs(out)}
    assert runs["SRC"].finished and runs["KD"].finished and runs["KD"].metric is not None


def test_t1_distils_from_the_vit_l14_promptsrc_runs():
    """T1's PromptKD / DAPT+PromptKD: upstream's student (all training images, KD weight 1000, 200 on
    three datasets) after the ViT-L/14 (DAPT+)PromptSRC teacher run of the same dataset and seed."""
    spec = sweep.load_spec("T1_base2new")
    jobs, notes = sweep.expand(spec, "out", seeds=[2], datasets=["dtd", "caltech101"],
                               methods=["PromptKD", "DAPT+PromptKD"])
    assert not [n for n in notes if "Prompt" in n]
    assert len(jobs) == 4
    for job in jobs:
        teacher_cfg, _, student, student_new = (sweep.build_cfg(s.argv) for s in job.steps)
        assert teacher_cfg.MODEL.BACKBONE.NAME == "ViT-L/14" and teacher_cfg.TRAINER.NAME == "PromptSRC"
        assert teacher_cfg.DAPT.ENABLED == job.name.startswith("DAPT+")
        assert student.MODEL.BACKBONE.NAME == "ViT-B/16" and not student.DAPT.ENABLED
        for cfg in (student, student_new):
            assert cfg.TRAINER.PROMPTKD.TEACHER_CKPT == \
                os.path.join(job.steps[0].output_dir, "VLPromptLearner", "model.pth.tar-20")
            assert cfg.TRAINER.PROMPTKD.KD_WEIGHT == (200.0 if cfg.DATASET.NAME == "DescribableTextures" else 1000.0)
            assert cfg.DATASET.NUM_SHOTS == 0
        assert student.DATASET.SUBSAMPLE_CLASSES == "base" and student_new.DATASET.SUBSAMPLE_CLASSES == "new"
    bad = dict(spec.data, methods=[dict(spec.data["methods"][-1], dataset_opts={"dtdd": ["OPTIM.LR", "0.1"]})])
    with pytest.raises(sweep.SpecError, match="dataset_opts maps datasets of the spec"):
        sweep.check_spec("T1.yaml", bad)


def test_default_methods_and_a_method_needing_keys_this_version_lacks():
    data = dict(E2E_SPEC, methods=E2E_SPEC["methods"] + [
        {"name": "Future", "trainer": "MaPLe", "config": "configs/trainers/MaPLe/toy_scenes.yaml",
         "opts": ["DAPT.NOT_A_KEY", "1"], "requires_keys": ["DAPT.NOT_A_KEY"]},
        {"name": "Now", "trainer": "MaPLe", "config": "configs/trainers/MaPLe/toy_scenes.yaml",
         "opts": ["DAPT.ERASE.RATE", "0.3"], "requires_keys": ["DAPT.ERASE.RATE"]}],
        default_methods=["MaPLe", "Future", "Now"])
    sweep.check_spec("d.yaml", data)
    jobs, notes = sweep.expand(sweep.Spec("d.yaml", data), "out")
    # the defaults, without the method whose key is missing (a note says why), and not CLIP
    assert sorted({j.method for j in jobs}) == ["MaPLe", "Now"] and len(jobs) == 4
    assert notes == ["Future: not run: needs config key(s) DAPT.NOT_A_KEY, which this version of dapt does not have"]
    # asked for by name, a method outside the defaults runs
    jobs, _ = sweep.expand(sweep.Spec("d.yaml", data), "out", methods=["CLIP"])
    assert {j.method for j in jobs} == {"CLIP"}
    with pytest.raises(sweep.SpecError, match="default_methods: a list of method names of the spec"):
        sweep.check_spec("d.yaml", dict(data, default_methods=["MaPLe", "Nobody"]))
