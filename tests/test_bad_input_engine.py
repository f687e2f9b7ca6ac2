"""Bad input and faults on the engine side, through the real ``train.py``: each case builds the bad
input on disk, runs the command, and checks the exit code, the one line naming the culprit (no
traceback) and that what an earlier run wrote is intact.

Nothing here relies on file permissions (CI runs as root, for whom chmod denies nothing): an
unwritable location is a path under a regular file, a full disk is RLIMIT_FSIZE (Python ignores
SIGXFSZ, so an oversized write fails with an OSError as on a full disk)."""
import fcntl
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CKPT = "prompt_learner"  # CoOp's checkpoint folder

OPTS = ["MODEL.BACKBONE.NAME", "dapt-tiny-vit", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(64, 64)",
        "DATALOADER.NUM_WORKERS", "0", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32",
        "DATASET.SCENES.N_TRAIN", "3", "DATASET.SCENES.N_VAL", "1", "DATASET.SCENES.N_TEST", "2",
        "DATASET.SCENES.NUM_CLASSES", "4", "TRAIN.CHECKPOINT_FREQ", "1", "VERBOSE", "False",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2"]  # 12 images: 3 steps per epoch


def command(root, out, *extra, flags=(), trainer="CoOp", dataset="objects_on_scenes"):
    return [sys.executable, str(REPO / "train.py"), "--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / f"configs/datasets/{dataset}.yaml"),
            "--config-file", str(REPO / "configs/trainers/CoOp/vit_b16.yaml"), "--output-dir", str(out), *flags,
            *OPTS, *extra]


def env():
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def train(root, out, *extra, flags=(), preexec_fn=None, **kw):
    return subprocess.run(command(root, out, *extra, flags=flags, **kw), capture_output=True, text=True, env=env(),
                          timeout=300, preexec_fn=preexec_fn)


def assert_ok(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def assert_one_line(r, *needles, code=2):
    """Exit ``code``, no traceback, exactly one ``error:`` line on stderr that contains every needle."""
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(("error:", "interrupted:"))]
    assert len(lines) == 1, r.stderr[-3000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def digest(folder):
    """{relative path: sha256} of the files under ``folder`` (what 'intact' means), leaving out the lock
    (it holds the last owner's pid) and the new log.txt-<time> / config.yaml-<time> a rerun may add."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock" and not p.name.startswith(("log.txt-", "config.yaml-"))}


def main_in_process(capsys, root, out, *extra, flags=(), **kw):
    """``dapt.cli.main`` (what train.py calls) in this process: for the variants of a case whose
    subprocess test is above, without paying the interpreter start-up again."""
    from dapt.cli import main
    from dapt.utils.logging import setup_logger

    argv = command(root, out, *extra, flags=flags, **kw)[2:]
    capsys.readouterr()
    try:
        code = main(argv)
    finally:
        setup_logger(None, console=False)  # drop the handlers bound to the captured streams
    cap = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, cap.out, cap.err)


def tmp_files(folder):
    return [p for p in Path(folder).rglob("*.tmp")]


def ctx(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["ctx"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(data root, a finished 2-epoch run with model.pth.tar-1 and -2)."""
    base = tmp_path_factory.mktemp("engine_bad")
    root, out = base / "data", base / "finished"
    assert_ok(train(root, out))
    assert sorted(p.name for p in (out / CKPT).iterdir()) == ["checkpoint", "model.pth.tar-1", "model.pth.tar-2"]
    return root, out


def copy_run(finished, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(finished[1], dst)
    return dst


# ---------------------------------------------------------------- item 2: NaN / inf
def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(finished, tmp_path):
    root, out = finished[0], tmp_path / "nan"
    # epoch 1 warms up at 1e-5 (fine, saved), epoch 2 at lr 1e30: the first step blows the prompts up,
    # the second step's loss is NaN
    r = train(root, out, "OPTIM.MAX_EPOCH", "3", "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant",
              "OPTIM.LR", "1e30")
    line = assert_one_line(r, "non-finite loss", "epoch 2 step 2", "term cls", "model.pth.tar-1")
    assert "OPTIM.LR" in line
    files = sorted(p.name for p in (out / CKPT).iterdir())
    assert files == ["checkpoint", "model.pth.tar-1"]  # nothing after the divergence, no temp file
    assert (out / CKPT / "checkpoint").read_text().strip() == "model.pth.tar-1"
    assert torch.isfinite(ctx(out / CKPT / "model.pth.tar-1")).all()
    # the log says where it stopped; the metric line of a finished run is absent
    assert "Finish training" not in (out / "log.txt").read_text()


def test_nonfinite_state_is_never_saved(tiny_name, tmp_path):
    """From epoch 2 on a term whose value is finite (sqrt(0) = 0) but whose gradient is NaN: the step
    makes the prompts NaN while every loss was finite, so the state check before saving stops the run
    and only the epoch-1 checkpoint exists."""
    from dapt.config import get_cfg_default
    from dapt.engine.build import build_trainer
    from dapt.engine.trainer import TrainingDiverged
    from engine_fixtures import make_dm

    cfg = get_cfg_default()
    cfg.TRAINER.NAME, cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED = "CoOp", tiny_name, False
    cfg.OUTPUT_DIR, cfg.VERBOSE, cfg.TRAINER.COOP.N_CTX = str(tmp_path), False, 4
    cfg.OPTIM.MAX_EPOCH, cfg.TRAIN.CHECKPOINT_FREQ = 3, 1
    t = build_trainer(cfg, dm=make_dm(batch_size=32))  # one step per epoch
    real = t.compute_losses

    def losses(batch):
        out, logits = real(batch)
        if t.epoch >= 1:
            c = t.model.prompt_learner.ctx
            out["cls"] = out["cls"] + torch.sqrt((c - c.detach()).abs().sum())
        return out, logits

    t.compute_losses = losses
    with pytest.raises(TrainingDiverged, match=r"ctx holds NaN/inf after epoch 2.*model\.pth\.tar-1"):
        t.train()
    assert sorted(p.name for p in (tmp_path / CKPT).iterdir()) == ["checkpoint", "model.pth.tar-1"]
    assert torch.isfinite(ctx(tmp_path / CKPT / "model.pth.tar-1")).all()


def test_fp16_scaler_skips_are_tolerated_until_the_limit(tiny_name, tmp_path):
    """The skip counting with a real GradScaler (CPU): a few skipped steps pass, a long run stops."""
    from dapt.config import get_cfg_default
    from dapt.engine.build import build_trainer
    from dapt.engine.trainer import TrainingDiverged
    from engine_fixtures import make_dm

    cfg = get_cfg_default()
    cfg.TRAINER.NAME, cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED = "CoOp", tiny_name, False
    cfg.OUTPUT_DIR, cfg.VERBOSE, cfg.TRAINER.COOP.N_CTX = str(tmp_path), False, 4
    cfg.OPTIM.MAX_EPOCH, cfg.TRAIN.MAX_SKIPPED_STEPS, cfg.TRAIN.PRINT_FREQ = 1, 3, 100
    t = build_trainer(cfg, dm=make_dm(batch_size=2, n_train=2))  # 4 steps
    t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    t.nonfinite.use_scaler = True
    real = t.compute_losses
    poison = {"steps": {1, 2}}  # two skipped steps in a row: below the limit of 3

    def losses(batch):
        out, logits = real(batch)
        if t.global_step in poison["steps"]:
            out = {k: v * float("inf") for k, v in out.items()}
        return out, logits

    t.compute_losses = losses
    before = t.get_model_state()["ctx"].clone()
    t.train()  # passes: skipped steps are normal under loss scaling
    assert t.scaler.get_scale() == 2.0 ** 6  # halved twice
    assert not torch.equal(before, t.get_model_state()["ctx"])
    assert torch.isfinite(t.get_model_state()["ctx"]).all()

    cfg2 = cfg.clone()
    cfg2.OUTPUT_DIR = str(tmp_path / "second")
    t2 = build_trainer(cfg2, dm=make_dm(batch_size=2, n_train=2))
    t2.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    t2.nonfinite.use_scaler = True
    real2 = t2.compute_losses
    t2.compute_losses = lambda b: ({k: v * float("inf") for k, v in real2(b)[0].items()}, None)
    with pytest.raises(TrainingDiverged, match="3 optimizer steps in a row skipped.*epoch 1 step 3"):
        t2.train()
    assert not (tmp_path / "second" / CKPT).exists()


# ---------------------------------------------------------------- item 3: output folders
def test_rerun_into_a_finished_folder_resumes_and_changes_nothing(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    # as if the folder was written before TRAIN.MAX_SKIPPED_STEPS existed: it holds its default, ignored
    cfg = out / "config.yaml"
    assert "  MAX_SKIPPED_STEPS: 50\n" in cfg.read_text()
    cfg.write_text(cfg.read_text().replace("  MAX_SKIPPED_STEPS: 50\n", ""))
    before = digest(out / CKPT), cfg.read_bytes()
    r = main_in_process(capsys, finished[0], out, "TRAIN.PRINT_FREQ", "1")  # an ignored key may differ
    assert_ok(r)
    assert (digest(out / CKPT), cfg.read_bytes()) == before
    assert "* accuracy:" in r.stdout


def test_changed_config_is_refused_and_fresh_moves_the_old_run_aside(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    cfg = out / "config.yaml"
    cfg.write_text(cfg.read_text().replace("  MAX_SKIPPED_STEPS: 50\n", ""))  # a key added since
    before = digest(out)
    r = train(finished[0], out, "OPTIM.LR", "0.5", "TRAIN.MAX_SKIPPED_STEPS", "7")
    assert_one_line(r, str(out), "OPTIM.LR: 0.002 -> 0.5", "TRAIN.MAX_SKIPPED_STEPS: (absent) -> 7", "--fresh")
    assert digest(out) == before and not list(out.glob("log.txt-*"))  # nothing written, not even a log

    # --fresh; with umask 027 every file written is rw-r----- (item 7)
    r = train(finished[0], out, "OPTIM.LR", "0.5", flags=["--fresh"], preexec_fn=lambda: os.umask(0o027))
    assert_ok(r)
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(moved) == 1 and digest(moved[0]) == before  # the old run is kept, byte for byte
    assert "LR: 0.5\n" in (out / "config.yaml").read_text()
    for rel in ("config.yaml", "log.txt", f"{CKPT}/model.pth.tar-1", f"{CKPT}/model.pth.tar-2", f"{CKPT}/checkpoint"):
        assert (out / rel).stat().st_mode & 0o777 == 0o640, rel


def test_missing_resume_folder_is_refused(finished, tmp_path, capsys):
    r = train(finished[0], tmp_path / "out", flags=["--resume", str(tmp_path / "nowhere")])
    assert_one_line(r, "--resume", str(tmp_path / "nowhere"), "does not exist")
    assert not (tmp_path / "out").exists()
    # an existing folder without checkpoints is refused too, never a silent fresh start
    (tmp_path / "empty").mkdir()
    r = main_in_process(capsys, finished[0], tmp_path / "out", flags=["--resume", str(tmp_path / "empty")])
    assert_one_line(r, "--resume", "no checkpoint", str(tmp_path / "empty" / CKPT))
    assert not (tmp_path / "out").exists()


def test_unreadable_latest_checkpoint_falls_back_and_none_readable_is_refused(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    good = ctx(out / CKPT / "model.pth.tar-2")
    (out / CKPT / "model.pth.tar-2").write_bytes((out / CKPT / "model.pth.tar-2").read_bytes()[:500])  # truncated
    r = main_in_process(capsys, finished[0], out)
    assert_ok(r)
    assert "cannot read checkpoint" in r.stdout and "model.pth.tar-2" in r.stdout and "falling back" in r.stdout
    assert "Resumed from" in r.stdout and "model.pth.tar-1" in r.stdout
    assert torch.equal(ctx(out / CKPT / "model.pth.tar-2"), good)  # retrained bit for bit

    for name in ("model.pth.tar-1", "model.pth.tar-2"):
        (out / CKPT / name).write_bytes(b"not a checkpoint")
    before = digest(out)
    r = main_in_process(capsys, finished[0], out)
    assert_one_line(r, "no readable checkpoint", str(out / CKPT), "--fresh")
    assert digest(out) == before


def test_second_run_is_refused_and_kill_9_then_resume_is_bit_identical(finished, tmp_path):
    root, ref = finished  # the uninterrupted run
    out = tmp_path / "killed"
    p = subprocess.Popen(command(root, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        deadline = time.time() + 300
        while not (out / CKPT / "model.pth.tar-1").exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        os.kill(p.pid, signal.SIGSTOP)  # frozen mid-run, still holding the folder's lock
        assert not (out / CKPT / "model.pth.tar-2").exists(), "the run finished before it could be stopped"
        r = train(root, out)
        assert_one_line(r, str(out), "in use by another run", f"process {p.pid}")
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL
    # a temporary file a killed writer can leave behind is removed when the folder is taken again
    stale = out / CKPT / "model.pth.tar-2.k1ll3d_x.tmp"
    stale.write_bytes(b"partial")
    r = train(root, out)
    assert_ok(r)
    assert "Resumed from" in r.stdout and "model.pth.tar-1" in r.stdout and not tmp_files(out)
    assert torch.equal(ctx(out / CKPT / "model.pth.tar-2"), ctx(ref / CKPT / "model.pth.tar-2"))
    # the lock is a plain file that nobody holds now
    with open(out / ".lock") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


# ---------------------------------------------------------------- item 6: one-line errors
def test_yaml_syntax_error_names_file_and_line(finished, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  LR: 0.1\n   MAX_EPOCH: 3\n")
    cmd = command(finished[0], tmp_path / "out")
    cmd[cmd.index("--config-file") + 1] = str(bad)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300)
    assert_one_line(r, str(bad), "line 3", "YAML syntax error")
    assert not (tmp_path / "out").exists()
    # a damaged config.yaml in the output folder is named too, and left as it is
    out = copy_run(finished, tmp_path)
    (out / "config.yaml").write_text("OPTIM: [1, 2\n")
    before = digest(out)
    r = main_in_process(capsys, finished[0], out)
    assert_one_line(r, str(out / "config.yaml"), "line 2", "YAML syntax error")
    assert digest(out) == before


def test_unwritable_output_dir_names_the_path(finished, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("I am a file")
    r = train(finished[0], blocker / "out")
    assert_one_line(r, str(blocker / "out"))
    assert blocker.read_text() == "I am a file"


def test_disk_full_while_saving_names_the_checkpoint_and_keeps_the_previous_one(finished, tmp_path):
    out = copy_run(finished, tmp_path)
    (out / CKPT / "model.pth.tar-2").unlink()  # as if the run had died during epoch 2
    (out / CKPT / "checkpoint").write_text("model.pth.tar-1\n")
    before = digest(out / CKPT)

    def small_disk():  # any file growing past 16 KB fails (a checkpoint is about 20 KB)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))

    r = train(finished[0], out, preexec_fn=small_disk)
    assert_one_line(r, str(out / CKPT / "model.pth.tar-2"), "File too large")
    assert digest(out / CKPT) == before and not tmp_files(out)


def test_max_epoch_zero(finished, tmp_path, capsys):
    r = main_in_process(capsys, finished[0], tmp_path / "out", "OPTIM.MAX_EPOCH", "0")
    assert_one_line(r, "OPTIM.MAX_EPOCH", ">= 1")
    assert not (tmp_path / "out").exists()


def test_empty_training_set(tmp_path):
    """An Oxford-Pets layout whose split file has no training images."""
    ddir = tmp_path / "data" / "oxford_pets"
    (ddir / "images").mkdir(parents=True)
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(["abyssinian", "bengal"]):
        rel = f"{name.title()}_1.jpg"
        Image.fromarray(np.full((40, 40, 3), 60 + 100 * label, np.uint8)).save(ddir / "images" / rel)
        split["val"].append([rel, label, name])
        split["test"].append([rel, label, name])
    (ddir / "split_zhou_OxfordPets.json").write_text(json.dumps(split))
    out = tmp_path / "nested" / "out"
    r = train(tmp_path / "data", out, dataset="oxford_pets")
    assert_one_line(r, "training set", "empty", "DATASET.ROOT")
    assert not (tmp_path / "nested").exists()  # no empty output folders left behind


def test_ctrl_c_exits_130_and_keeps_only_complete_checkpoints(finished, tmp_path):
    root, out = finished[0], tmp_path / "int"
    extra = ["OPTIM.MAX_EPOCH", "200"]
    # a shell that starts pytest in the background (`cmd &` without job control) makes it, and every
    # child, ignore SIGINT, as `nohup train.py &` should; the child here must get the terminal's default
    p = subprocess.Popen(command(root, out, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        while not (out / CKPT / "model.pth.tar-1").exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    r = subprocess.CompletedProcess(p.args, p.returncode, "", err)
    assert_one_line(r, "interrupted", str(out), code=130)
    assert not tmp_files(out)
    saved = sorted((out / CKPT).glob("model.pth.tar-*"), key=lambda q: int(q.name.split("-")[-1]))
    assert saved and not (out / CKPT / "model.pth.tar-200").exists()
    for q in saved:
        assert torch.isfinite(ctx(q)).all()  # every file there is complete and readable


def test_eval_only_without_model_dir_on_learnable_prompts_is_refused(finished, tmp_path, capsys):
    r = train(finished[0], tmp_path / "out", flags=["--eval-only"])
    assert_one_line(r, "--eval-only without --model-dir", "untrained", "CoOp")
    assert not (tmp_path / "out").exists()
    # with --model-dir it evaluates, and rerunning it into the same folder works (the test scripts)
    for _ in range(2):
        r = main_in_process(capsys, finished[0], tmp_path / "out",
                            flags=["--eval-only", "--model-dir", str(finished[1])])
        assert_ok(r)
        assert "* accuracy:" in r.stdout


def test_model_dir_without_eval_only_is_refused(finished, tmp_path, capsys):
    r = main_in_process(capsys, finished[0], tmp_path / "out", flags=["--model-dir", str(finished[1])])
    assert_one_line(r, "--model-dir", "--eval-only")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- item 7: permissions follow the umask
def test_atomic_writers_follow_the_umask(tmp_path):
    from dapt.engine.checkpoint import atomic_torch_save, atomic_write_text

    old = os.umask(0o002)
    try:
        atomic_torch_save({"a": torch.ones(1)}, tmp_path / "w.pt")
        atomic_write_text(tmp_path / "w.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "w.pt").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "w.txt").stat().st_mode & 0o777 == 0o664
