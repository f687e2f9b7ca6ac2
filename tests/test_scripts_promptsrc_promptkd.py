"""The PromptSRC / PromptKD scripts call train.py with existing configs, upstream's folders and weights."""
import pytest
from test_scripts import check_configs, flag, run_script


@pytest.mark.parametrize("mode", ["none", "dapt-s"])
def test_promptsrc_base_to_novel(tmp_path, mode):
    train = run_script(tmp_path, "scripts/promptsrc/base2new_train.sh", ["dtd", mode])
    test = run_script(tmp_path, "scripts/promptsrc/base2new_test.sh", ["dtd", mode])
    assert len(train) == len(test) == 1
    for argv in train + test:
        check_configs(argv)
        assert argv[0] == "train.py" and flag(argv, "--trainer") == "PromptSRC"
    cfg = flag(train[0], "--config-file")
    if mode == "none":
        assert "--mode" not in train[0] and cfg.endswith("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml")
        assert "/base2new/train_base/dtd/shots_16/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx/seed1" in flag(train[0], "--output-dir")
    else:
        assert flag(train[0], "--mode") == "dapt-s" and cfg.endswith("PromptSRC/dapt_vit_b16_c2_ep20_batch4_4+4ctx.yaml")
    assert flag(test[0], "--model-dir") == flag(train[0], "--output-dir")
    assert flag(test[0], "--load-epoch") == "20" and test[0][-1] == "new" and "--eval-only" in test[0]


def test_promptsrc_few_shot_and_cross_dataset(tmp_path):
    calls = run_script(tmp_path, "scripts/promptsrc/few_shot.sh", ["dtd"], SHOTS="1 16")
    assert len(calls) == 2 and calls[1][-2:] == ["DATASET.NUM_SHOTS", "16"]
    assert "TRAINER.PROMPTSRC.GPA_MEAN" in calls[0] and flag(calls[0], "TRAINER.PROMPTSRC.GPA_MEAN") == "45"
    xd = run_script(tmp_path, "scripts/promptsrc/xd_train.sh", [])
    xt = run_script(tmp_path, "scripts/promptsrc/xd_test.sh", ["caltech101"])
    for argv in calls + xd + xt:
        check_configs(argv)
    assert flag(xt[0], "--model-dir") == flag(xd[0], "--output-dir")
    assert flag(xd[0], "--config-file").endswith("vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml")


@pytest.mark.parametrize("dataset,weight", [("oxford_pets", "1000.0"), ("dtd", "200.0")])
def test_promptkd_base_to_novel(tmp_path, dataset, weight):
    train = run_script(tmp_path, "scripts/promptkd/base2new_train.sh", [dataset], TEACHER_CKPT="/t/model-best.pth.tar")
    test = run_script(tmp_path, "scripts/promptkd/base2new_test.sh", [dataset], TEACHER_CKPT="/t/model-best.pth.tar")
    argv = train[0]
    check_configs(argv)
    assert flag(argv, "--trainer") == "PromptKD" and flag(argv, "TRAINER.PROMPTKD.KD_WEIGHT") == weight
    assert flag(argv, "TRAINER.MODAL") == "base2novel" and flag(argv, "DATASET.NUM_SHOTS") == "0"
    assert flag(argv, "TRAINER.PROMPTKD.TEACHER_CKPT") == "/t/model-best.pth.tar"
    assert flag(argv, "--output-dir").endswith(f"base2new/train_base/{dataset}/shots_0/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx/seed_1")
    # the test split of the base / novel classes: parse_results reads "Evaluate on the *test* set" blocks
    assert [flag(a, "DATASET.SUBSAMPLE_CLASSES") for a in test] == ["base", "new"]
    assert "TEST.SPLIT" not in test[0] + test[1]
    assert all(flag(a, "--model-dir") == flag(argv, "--output-dir") for a in test)
    xd = run_script(tmp_path, "scripts/promptkd/xd_train.sh", ["caltech101"])
    check_configs(xd[0])
    assert flag(xd[0], "TRAINER.MODAL") == "cross" and "TRAINER.PROMPTKD.TEACHER_CKPT" not in xd[0]


@pytest.mark.parametrize("mode", ["dapt-s", "dapt-g"])
def test_dapt_promptkd_chain(tmp_path, mode):
    calls = run_script(tmp_path, "scripts/promptkd/dapt_chain.sh", ["oxford_pets", mode])
    assert [flag(a, "--trainer") for a in calls] == ["PromptSRC", "PromptKD", "PromptKD", "PromptKD"]
    for argv in calls:
        check_configs(argv)
    teacher, kd = calls[0], calls[1]
    assert flag(teacher, "--mode") == mode and flag(teacher, "--config-file").endswith("PromptSRC/dapt_vit_l14_c2_ep20_batch8_4+4ctx.yaml")
    assert "--mode" not in kd
    assert flag(kd, "TRAINER.PROMPTKD.TEACHER_CKPT") == flag(teacher, "--output-dir") + "/VLPromptLearner/model.pth.tar-20"
    assert f"/PromptKD_{mode}/" in flag(kd, "--output-dir")
