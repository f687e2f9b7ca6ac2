"""Shared test setup: offline, CPU, a tiny open_clip config registered as ``dapt-test-tiny``."""
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

TINY_NAME = "dapt-test-tiny"
TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def register_tiny(tmp_dir) -> str:
    import open_clip

    if TINY_NAME not in open_clip.list_models():
        path = os.path.join(str(tmp_dir), TINY_NAME + ".json")
        with open(path, "w") as f:
            json.dump(TINY_CFG, f)
        open_clip.add_model_config(path)
    return TINY_NAME


@pytest.fixture(scope="session")
def tiny_name(tmp_path_factory):
    return register_tiny(tmp_path_factory.mktemp("oc_cfg"))


@pytest.fixture(scope="session")
def tiny_clip(tiny_name):
    from dapt.models.clip import build_clip

    torch.manual_seed(0)
    return build_clip(tiny_name, pretrained=False)


@pytest.fixture(scope="session")
def tokenizer(tiny_name):
    from dapt.models.clip import get_tokenizer

    return get_tokenizer(tiny_name)
