"""PromptKD: the loss against a direct KL, teacher/student of different widths, the cached teacher
text, label independence, the projector's BatchNorm state, teacher loading, the transductive data."""
import json
import logging
import os
import types

import pytest
import torch
import torch.nn.functional as F
from engine_fixtures import CLASSNAMES, make_dm

from dapt.config import get_cfg_default
from dapt.engine.build import build_trainer
from dapt.methods.promptkd import PromptKDMethod
from dapt.methods.promptsrc import PromptSRCMethod
from dapt.trainers.promptkd import PromptKD, load_teacher_state

SMALL_NAME = "dapt-test-tiny-s"  # a student with other widths than the teacher's (dapt-test-tiny: 64)
SMALL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 1},
}
IMAGES = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(4))
LABELS = torch.tensor([0, 1, 2, 3, 0, 1])


@pytest.fixture(scope="module")
def small_name(tmp_path_factory):
    import open_clip

    if SMALL_NAME not in open_clip.list_models():
        path = tmp_path_factory.mktemp("oc_small") / f"{SMALL_NAME}.json"
        path.write_text(json.dumps(SMALL_CFG))
        open_clip.add_model_config(str(path))
    return SMALL_NAME


def kd_cfg(tiny_name, small_name, out="", **over):
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "PromptKD"
    cfg.MODEL.BACKBONE.NAME = small_name
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    cfg.SEED = 1
    cfg.OUTPUT_DIR = str(out)
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.05
    cfg.OPTIM.MAX_EPOCH = 3
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.TRAIN.CHECKPOINT_FREQ = 1
    cfg.TEST.NO_TEST = True
    cfg.TRAINER.MODAL = "cross"  # the in-memory data manager is used as given
    c = cfg.TRAINER.PROMPTKD
    c.PROMPT_DEPTH_VISION = 2
    c.TEACHER_NAME = tiny_name
    c.TEACHER_PROMPT_DEPTH_VISION = 2
    c.TEACHER_PROMPT_DEPTH_TEXT = 2
    c.KD_WEIGHT = 3.0
    c.TEMPERATURE = 2.0
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 2
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 2
    for k, v in over.items():
        node = cfg
        *path, leaf = k.split(".")
        for p in path:
            node = getattr(node, p)
        setattr(node, leaf, v)
    return cfg


@pytest.fixture()
def teacher(tiny_clip, tokenizer, tiny_name, small_name):
    torch.manual_seed(0)
    t = PromptSRCMethod(kd_cfg(tiny_name, small_name), CLASSNAMES, tiny_clip, tokenizer)
    with torch.no_grad():
        for p in t.learnable_parameters().values():
            p.add_(0.05 * torch.randn_like(p))
    return t


@pytest.fixture()
def student(teacher, tiny_name, small_name):
    from dapt.models.clip import build_clip, get_tokenizer

    torch.manual_seed(1)
    return PromptKDMethod(kd_cfg(tiny_name, small_name), CLASSNAMES, build_clip(small_name, pretrained=False),
                          get_tokenizer(small_name), teacher=teacher)


def test_loss_is_the_direct_kl_between_teacher_and_student_of_other_widths(student, teacher):
    proj = student.VPT_image_trans.conv1
    assert (proj[0].in_features, proj[0].out_features, proj[3].out_features) == (32, 64, 64)
    assert isinstance(proj[1], torch.nn.BatchNorm1d) and isinstance(proj[2], torch.nn.ReLU)
    student.train()
    terms, logits = student.losses(IMAGES, LABELS)
    assert list(terms) == ["kd"]
    # direct computation
    with torch.no_grad():
        tt = teacher.encode_text()
        tt = tt / tt.norm(dim=-1, keepdim=True)
        ti = teacher.encode_image(IMAGES)
        ti = ti / ti.norm(dim=-1, keepdim=True)
        t_logits = teacher.clip_model.logit_scale.exp() * ti @ tt.t()  # the teacher's own scale
    fs = student.VPT_image_trans(student.image_tower(IMAGES, student.image_encoder.first(), student.image_encoder.deep()))
    fs = fs / fs.norm(dim=-1, keepdim=True)
    s_logits = student.clip_model.logit_scale.exp() * fs @ tt.t()
    T = 2.0
    p_t = (t_logits / T).softmax(dim=1)
    kl = (p_t * (p_t.log() - (s_logits / T).log_softmax(dim=1))).sum() / s_logits.numel()
    expected = 3.0 * T * T * kl
    assert torch.allclose(logits, s_logits, atol=1e-5)
    assert torch.allclose(terms["kd"], expected, rtol=1e-5)
    terms["kd"].backward()
    grads = {k: p.grad for k, p in student.learnable_parameters().items()}
    assert set(grads) == {"image_encoder.VPT", "image_encoder.transformer.resblocks.1.VPT_shallow",
                          "VPT_image_trans.conv1.0.weight", "VPT_image_trans.conv1.0.bias",
                          "VPT_image_trans.conv1.1.weight", "VPT_image_trans.conv1.1.bias",
                          "VPT_image_trans.conv1.3.weight", "VPT_image_trans.conv1.3.bias"}
    assert all(g is not None and g.abs().sum() > 0 for k, g in grads.items() if k != "VPT_image_trans.conv1.0.bias")
    # the first bias is cancelled by the train-mode BatchNorm: zero gradient (as upstream)
    scale = grads["VPT_image_trans.conv1.0.weight"].abs().max()
    assert grads["VPT_image_trans.conv1.0.bias"].abs().max() < 1e-4 * scale  # rounding only
    assert not any(p.requires_grad for p in teacher.parameters())


def test_teacher_text_features_are_computed_once(student, teacher):
    calls = []
    enc = teacher.encode_text
    teacher.encode_text = lambda: calls.append(1) or enc()
    student.train()
    for _ in range(3):
        student.losses(IMAGES, LABELS)[0]["kd"].backward()
    student.eval()
    with torch.no_grad():
        student(IMAGES)
    assert len(calls) == 1


def test_loss_does_not_depend_on_labels(student):
    student.eval()  # the same normalisation for both calls
    a, _ = student.losses(IMAGES, LABELS)
    b, _ = student.losses(IMAGES, LABELS[torch.randperm(len(LABELS), generator=torch.Generator().manual_seed(0))])
    c, _ = student.losses(IMAGES, torch.zeros_like(LABELS))
    assert torch.equal(a["kd"], b["kd"]) and torch.equal(a["kd"], c["kd"])


def test_batchnorm_trains_on_batch_statistics_and_evaluates_with_running_ones(student):
    bn = student.VPT_image_trans.conv1[1]
    feats = student.image_tower(IMAGES, student.image_encoder.first(), student.image_encoder.deep()).detach()
    h = student.VPT_image_trans.conv1[0](feats).detach()
    student.train()
    assert not student.teacher.training and not student.clip_model.training
    student.VPT_image_trans(feats)
    assert torch.allclose(bn.running_mean, 0.1 * h.mean(0), atol=1e-6)  # momentum 0.1 from zeros
    assert int(bn.num_batches_tracked) == 1
    student.eval()
    out = student.VPT_image_trans(feats)
    norm = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    assert torch.allclose(out, student.VPT_image_trans.conv1[3](norm.relu()), atol=1e-5)


def _train(cfg, teacher):
    from dapt.utils.misc import set_random_seed

    set_random_seed(cfg.SEED)
    t = PromptKD(cfg, dm=make_dm(), teacher=teacher)
    t.train()
    return t


def test_checkpoint_and_resume_hold_the_batchnorm_statistics(tiny_name, small_name, tmp_path, teacher):
    full = _train(kd_cfg(tiny_name, small_name, tmp_path / "full"), teacher)
    state = full.get_model_state()
    for b in ("running_mean", "running_var", "num_batches_tracked"):
        assert "VPT_image_trans.conv1.1." + b in state
    assert int(state["VPT_image_trans.conv1.1.num_batches_tracked"]) == 3 * 4  # 3 epochs x 4 batches
    cfg = kd_cfg(tiny_name, small_name, tmp_path / "resumed")
    _train(cfg, teacher)
    (tmp_path / "resumed" / "VLPromptLearner" / "model.pth.tar-3").unlink()
    resumed = _train(cfg, teacher)
    assert resumed.start_epoch == 2
    got = resumed.get_model_state()
    assert list(got) == list(state)
    for k in state:
        assert torch.equal(state[k], got[k]), k
    # evaluation loads the statistics
    ev = PromptKD(kd_cfg(tiny_name, small_name, tmp_path / "eval"), dm=make_dm(), teacher=teacher)
    ev.load_model(str(tmp_path / "full"), epoch=3)
    bn = ev.model.VPT_image_trans.conv1[1]
    assert torch.equal(bn.running_mean, state["VPT_image_trans.conv1.1.running_mean"])
    # upstream's projector weights are 1x1 convolutions: they load too
    up = dict(state)
    up["VPT_image_trans.conv1.0.weight"] = up["VPT_image_trans.conv1.0.weight"][:, :, None, None].half()
    ev.load_model_state(up)
    assert torch.equal(ev.model.VPT_image_trans.conv1[0].weight, state["VPT_image_trans.conv1.0.weight"].half().float())


def _upstream_teacher_state(teacher, n_classes):
    sd = {"prompt_learner.ctx": teacher.prompt_learner.ctx,
          "prompt_learner.token_prefix": torch.randn(n_classes, 1, 64),
          "prompt_learner.token_suffix": torch.randn(n_classes, 72, 64),
          "logit_scale": teacher.clip_model.logit_scale}
    for k, v in teacher.image_encoder.state_dict().items():
        sd["image_encoder." + k] = v
    for k, v in teacher.clip_model.visual.state_dict().items():
        sd["image_encoder." + k] = v
    for k, v in teacher.text_prompts.state_dict().items():
        sd["text_encoder." + k] = v
    return {k: v.detach().clone().half() for k, v in sd.items()}


def test_teacher_checkpoints_upstream_and_ours_and_bad_ones(tiny_name, small_name, tmp_path, teacher, tiny_clip, tokenizer):
    def fresh():
        return PromptSRCMethod(kd_cfg(tiny_name, small_name), CLASSNAMES, tiny_clip, tokenizer)

    up = tmp_path / "up.pth.tar"
    torch.save({"state_dict": _upstream_teacher_state(teacher, 2), "epoch": 20, "val_result": None}, up)
    t1 = fresh()
    load_teacher_state(t1, up)
    for k, p in t1.learnable_parameters().items():
        assert torch.equal(p, teacher.learnable_parameters()[k].half().float()), k
    # ours: a PromptSRC trainer's checkpoint
    cfg = kd_cfg(tiny_name, small_name, tmp_path / "src", **{"TRAINER.NAME": "PromptSRC", "OPTIM.MAX_EPOCH": 1})
    cfg.MODEL.BACKBONE.NAME = tiny_name
    src = build_trainer(cfg, dm=make_dm())
    src.train()
    t2 = fresh()
    load_teacher_state(t2, tmp_path / "src" / "VLPromptLearner" / "model.pth.tar-1")
    for k, p in src.model.learnable_parameters().items():
        assert torch.equal(t2.learnable_parameters()[k], p), k
    # a missing file, other key names, other shapes: one clear error each
    with pytest.raises(FileNotFoundError, match="TEACHER_CKPT"):
        load_teacher_state(fresh(), tmp_path / "nope.pth.tar")
    bad = tmp_path / "bad.pth.tar"
    torch.save({"state_dict": {"model.ctx": torch.zeros(4, 64)}, "epoch": 1}, bad)
    with pytest.raises(ValueError, match="not a PromptSRC checkpoint"):
        load_teacher_state(fresh(), bad)
    sd = _upstream_teacher_state(teacher, 2)
    sd["prompt_learner.ctx"] = torch.zeros(4, 32)
    torch.save({"state_dict": sd}, bad)
    with pytest.raises(ValueError, match="has shape"):
        load_teacher_state(fresh(), bad)
    # the trainer builds the teacher from the config's checkpoint (a CLI error is one line)
    kcfg = kd_cfg(tiny_name, small_name, tmp_path / "kd", **{"TRAINER.PROMPTKD.TEACHER_CKPT": str(up)})
    kd = PromptKD(kcfg, dm=make_dm())
    assert torch.equal(kd.model.teacher.prompt_learner.ctx, teacher.prompt_learner.ctx.half().float())
    with pytest.raises(FileNotFoundError, match="teacher_model"):
        PromptKD(kd_cfg(tiny_name, small_name, tmp_path / "kd2", **{"DATASET.NAME": "OxfordPets"}), dm=make_dm())


def test_unread_upstream_keys_warn(teacher, tiny_name, small_name, caplog):
    from dapt.models.clip import build_clip, get_tokenizer

    clip = build_clip(small_name, pretrained=False)
    with caplog.at_level(logging.WARNING):
        PromptKDMethod(kd_cfg(tiny_name, small_name), CLASSNAMES, clip, get_tokenizer(small_name), teacher=teacher)
    assert "CE_WEIGHT" not in caplog.text  # upstream's default 0.0 reproduces upstream
    cfg = kd_cfg(tiny_name, small_name, **{"TRAINER.PROMPTKD.CE_WEIGHT": 1.0, "TRAINER.PROMPTKD.PROJECT_LAYER": 3})
    with caplog.at_level(logging.WARNING):
        PromptKDMethod(cfg, CLASSNAMES, clip, get_tokenizer(small_name), teacher=teacher)
    assert "CE_WEIGHT is 1.0" in caplog.text and "PROJECT_LAYER is 3" in caplog.text


def test_base2novel_loader_covers_every_class_training_images(tmp_path, caplog):
    from dapt.data.registry import build_dataset

    cfg = get_cfg_default()
    from dapt.config import merge_from_file

    merge_from_file(cfg, os.path.join(os.path.dirname(__file__), "..", "configs", "datasets", "objects_on_scenes.yaml"))
    cfg.DATASET.ROOT = str(tmp_path / "data")
    cfg.DATASET.SCENES.N_TRAIN = 3
    cfg.DATASET.SCENES.N_VAL = 1
    cfg.DATASET.SCENES.N_TEST = 2
    cfg.DATASET.SUBSAMPLE_CLASSES = "new"  # training ignores it in base2novel (as upstream), with a warning
    cfg.INPUT.SIZE = (64, 64)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.TRAINER.MODAL = "base2novel"
    with caplog.at_level(logging.WARNING):
        dm = PromptKD.build_data_loader(types.SimpleNamespace(cfg=cfg))
    assert "SUBSAMPLE_CLASSES new only chooses the classes whose test images" in caplog.text
    cfg.DATASET.SUBSAMPLE_CLASSES = "base"  # the test split: the base classes' test images
    base_dm = PromptKD.build_data_loader(types.SimpleNamespace(cfg=cfg))
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    full = build_dataset(cfg)
    n = full.num_classes
    train = dm.train_loader_x.dataset.data_source
    assert sorted(d.impath for d in train) == sorted(d.impath for d in full.train_x)
    assert {d.label for d in train} == set(range(n)) and dm.classnames == full.classnames
    m = (n + 1) // 2
    val = dm.val_loader.dataset.data_source
    test = dm.test_loader.dataset.data_source
    assert sorted(d.impath for d in val) == sorted(d.impath for d in full.test if d.label < m)
    assert sorted(d.impath for d in test) == sorted(d.impath for d in full.test if d.label >= m)
    assert {d.label for d in test} == set(range(n - m))  # relabelled from 0, scored on the novel columns
    assert [d.impath for d in base_dm.test_loader.dataset.data_source] == [d.impath for d in val]
    assert sorted(d.impath for d in base_dm.train_loader_x.dataset.data_source) == sorted(d.impath for d in train)


def test_eval_scores_each_split_against_its_classes(tiny_name, small_name, tmp_path, teacher):
    kd = PromptKD(kd_cfg(tiny_name, small_name, tmp_path, **{"TRAINER.MODAL": "base2novel"}), dm=make_dm(), teacher=teacher)
    kd.model.eval()
    with torch.no_grad():
        full = kd.model(IMAGES)
        kd._eval_split = "val"
        base = kd.model_inference(IMAGES)
        kd._eval_split = "test"
        novel = kd.model_inference(IMAGES)
    assert torch.equal(base, full[:, :2]) and torch.equal(novel, full[:, 2:])
    kd.cfg.defrost()
    kd.cfg.DATASET.SUBSAMPLE_CLASSES = "base"  # the test split holds the base classes' images then
    with torch.no_grad():
        assert torch.equal(kd.model_inference(IMAGES), full[:, :2])
    tt = F.normalize(teacher.encode_text(), dim=-1)[2:]
    fs = F.normalize(kd.model.encode_image(IMAGES), dim=-1)
    assert torch.allclose(novel, kd.model.clip_model.logit_scale.exp() * fs @ tt.t(), atol=1e-5)


def test_upstream_config_files():
    from pathlib import Path

    from dapt.config import merge_from_file

    root = Path(__file__).resolve().parents[1] / "configs" / "trainers"
    for name, depth in [("vit_b16_c2_ep20_batch8_4+4ctx.yaml", 9), ("vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets.yaml", 3)]:
        cfg = get_cfg_default()
        merge_from_file(cfg, str(root / "PromptKD" / name))
        c = cfg.TRAINER.PROMPTKD
        assert (c.N_CTX_VISION, c.PROMPT_DEPTH_VISION, c.TEACHER_NAME, c.KD_WEIGHT, c.CE_WEIGHT) == (4, depth, "ViT-L/14", 1.0, 0.0)
        assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.TEST.FINAL_MODEL) == (0.005, 20, 8, "best_val")
    cfg = get_cfg_default()
    merge_from_file(cfg, str(root / "PromptSRC" / "vit_l14_c2_ep20_batch8_4+4ctx.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "ViT-L/14" and cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION == 9


def test_learnable_parameter_counts_vit_b16():
    """PromptSRC and the PromptKD student at ViT-B/16 (random weights, no forward) against the
    counts from upstream's code: IVLP prompts; student visual prompts + the 512 -> 768 projector."""
    import open_clip

    from dapt.methods.promptkd import FeatureProjector

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tok = open_clip.get_tokenizer("ViT-B-16")
    cfg = get_cfg_default()
    src = PromptSRCMethod(cfg, ["cat", "dog"], model, tok)  # upstream defaults: 4+4 tokens, depth 9
    n_src = sum(p.numel() for p in src.learnable_parameters().values())
    dt, dv, E, E_teacher = 512, 768, 512, 768  # ViT-B/16 text / image width, embedding; ViT-L/14 embedding
    assert n_src == 9 * 4 * dt + 9 * 4 * dv == 46_080
    student = PromptKDMethod(cfg, ["cat", "dog"], model, tok)  # the teacher (ViT-L/14) fixes the projector's width
    n_prompts = sum(p.numel() for p in student.learnable_parameters().values())
    n_proj = sum(p.numel() for p in FeatureProjector(student.image_tower.output_dim, E_teacher).parameters())
    upstream = 9 * 4 * dv + (E * E_teacher + E_teacher) + 2 * E_teacher + (E_teacher * E_teacher + E_teacher)
    assert n_prompts + n_proj == upstream == 1_013_760
