"""tools/visualize_attention.py: sheets for two tiny trained checkpoints; the maps drawn equal a
Grad-CAM computed directly (hand-run ViT, autograd), predictions equal the models' argmax, and the
DAPT-G / DAPT-S mask sheet shows the thresholded direct CAM and the store's masks."""
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_dapt_gradcam import direct_cam as direct_gradcams

REPO = Path(__file__).resolve().parents[1]
SCENES = ["DATASET.SCENES.N_TRAIN", "3", "DATASET.SCENES.N_VAL", "1", "DATASET.SCENES.N_TEST", "2",
          "DATASET.SCENES.NUM_CLASSES", "3"]


def common(root):
    return ["--root", str(root), "--trainer", "CoOp",
            "--dataset-config-file", str(REPO / "configs/datasets/objects_on_scenes.yaml"),
            "--config-file", str(REPO / "configs/trainers/MaPLe/toy_scenes.yaml")]


def opts():
    return ["TRAINER.COOP.N_CTX", "4", "DATALOADER.TEST.BATCH_SIZE", "4", "DAPT.CAM.BATCH_SIZE", "4", *SCENES]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two CoOp checkpoints (seeds 1 and 2, one epoch) on a tiny testbed."""
    from dapt.cli import build_parser, run, setup_cfg

    base = tmp_path_factory.mktemp("att")
    root = base / "data"
    dirs = []
    for seed in (1, 2):
        out = base / f"coop_seed{seed}"
        args = common(root) + ["--seed", str(seed), "--output-dir", str(out), "OPTIM.MAX_EPOCH", "1",
                               "TEST.NO_TEST", "True", *opts()]
        run(setup_cfg(build_parser().parse_args(args)), console=False)
        assert (out / "prompt_learner" / "model.pth.tar-1").is_file()
        dirs.append(out)
    return root, dirs


def tool():
    return importlib.import_module("dapt.tools.visualize_attention")


def direct_cam(clip, text, image, label):
    """Independent path (the ViT run by hand, autograd): Eq. 3's element-wise map."""
    return direct_gradcams(clip, text, image, label)[0]


def direct_maps(root, model_dir, impaths, labels):
    """(soft maps, binary masks, predictions) of the images, from a freshly built trainer."""
    from dapt.cli import build_parser, setup_cfg
    from dapt.data.data_manager import read_image
    from dapt.engine.build import build_trainer

    cfg = setup_cfg(build_parser().parse_args(common(root) + ["--output-dir", str(Path(model_dir) / "chk"), *opts()]))
    t = build_trainer(cfg)
    t.load_model(str(model_dir), epoch=1)
    m = t.model.eval()
    mean = torch.tensor(cfg.INPUT.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.INPUT.PIXEL_STD).view(3, 1, 1)
    soft, hard, preds = [], [], []
    with torch.no_grad():
        text = m.encode_text()
    for p, y in zip(impaths, labels):
        img = read_image(p).resize((64, 64), Image.BICUBIC)  # INPUT.SIZE (64, 64), bicubic
        x = (torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0 - mean) / std
        cam = direct_cam(m.clip_model, text, x, int(y))
        up = F.interpolate(cam[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
        g = (up - up.min()) / (up.max() - up.min()).clamp_min(1e-12)
        soft.append(g)
        hard.append((g > 0.5).float())
        with torch.no_grad():
            preds.append(int(m(x[None]).argmax()))
    return torch.stack(soft), torch.stack(hard), torch.tensor(preds)


def test_attention_sheet_maps_equal_direct_gradcam(runs, tmp_path):
    root, (a, b) = runs
    rc, res = tool().main(["attention", *common(root)[:6], "--config-file",
                           str(REPO / "configs/trainers/MaPLe/toy_scenes.yaml"), "--checkpoint", f"A={a}",
                           "--checkpoint", f"B={b}@1", "--num", "5", "--per-sheet", "3", "--out", str(tmp_path),
                           *opts()])
    assert rc == 0
    assert len(res["impaths"]) == 5 and [Path(p).name for p in res["sheets"]] == ["attention_000.png",
                                                                                   "attention_001.png"]
    for p in res["sheets"]:
        with Image.open(p) as im:
            assert im.width > 300 and im.height > 100  # 3 columns, rows of cells
    for label, d in (("A", a), ("B", b)):
        soft, _, preds = direct_maps(root, d, res["impaths"], res["labels"])
        assert res["maps"][label].shape == (5, 64, 64)
        assert torch.allclose(res["maps"][label], soft, atol=1e-4)
        assert res["preds"][label].tolist() == preds.tolist()
    assert not torch.allclose(res["maps"]["A"], res["maps"]["B"])  # two different checkpoints

    # --select wrong keeps exactly the images the first checkpoint gets wrong
    rc, wrong = tool().main(["attention", *common(root), "--checkpoint", f"A={a}", "--select", "wrong",
                             "--num", "100", "--out", str(tmp_path / "w"), *opts()])
    assert rc == 0
    assert all(p != y for p, y in zip(wrong["preds"]["A"].tolist(), wrong["labels"].tolist()))


def test_mask_sheet_g_vs_s(runs, tmp_path):
    root, (a, _) = runs
    rc, res = tool().main(["masks", *common(root), "--model-dir", str(a), "--load-epoch", "1", "--num", "4",
                           "--out", str(tmp_path), "DAPT.MASK.STORE", "gt", *opts()])
    assert rc == 0 and Path(res["sheets"][0]).is_file()
    # DAPT-G: the direct Grad-CAM of the true class, min-max normalised, > 0.5 (DAPT.CAM defaults)
    soft, hard, _ = direct_maps(root, a, res["impaths"], res["labels"])
    differ = res["gmasks"] != hard
    assert res["gmasks"].shape == (4, 64, 64) and 0 < float(res["gmasks"].mean()) < 1
    assert torch.all((soft[differ] - 0.5).abs() < 1e-4)  # at most ties at the threshold differ
    # DAPT-S: the store's PNGs, read here directly and resized (nearest)
    for p, s in zip(res["impaths"], res["smasks"]):
        files = [f for f in Path(root).rglob(Path(p).stem + "*.png") if "masks" in f.parts and "gt" in f.parts]
        assert len(files) == 1
        ref = np.asarray(Image.open(files[0]).resize((64, 64), Image.NEAREST)) > 0
        assert np.array_equal(s.numpy() > 0.5, ref)


def test_bad_checkpoint_spec_is_an_argparse_error():
    with pytest.raises(SystemExit):
        tool().build_parser().parse_args(["attention", "--trainer", "CoOp", "--checkpoint", "nolabel"])
