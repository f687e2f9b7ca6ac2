"""The shipped toy CLIP (dapt-tiny-vit): compact file integrity, expansion, loading, zero-shot skill."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dapt.data.synthetic import scenes
from dapt.models import toy

# Measured on the shipped checkpoint (see dapt/models/weights/README.md): object zero-shot accuracy
# on the default test split; the bound keeps a wide margin below it. Chance is 0.1.
OBJECT_ZERO_SHOT_BOUND = 0.4
BACKGROUND_ZERO_SHOT_BOUND = 0.8

CLIP_MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
CLIP_STD = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return toy.toy_clip_weights(cache_dir=str(tmp_path_factory.mktemp("toy_cache")))


@pytest.fixture(scope="module")
def model(weights):
    import open_clip

    from dapt.models.model_configs import register_model_configs

    register_model_configs()
    return open_clip.create_model(toy.TOY_MODEL, pretrained=weights).eval()


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    d = scenes.generate_objects_on_scenes(str(tmp_path_factory.mktemp("scn") / "default"), seed=1, p=0.9)
    with open(os.path.join(d, scenes.SPLIT_FILE)) as f:
        test = json.load(f)["test"]
    labels = scenes.read_scene_labels(d)
    imgs = np.stack([np.asarray(Image.open(os.path.join(d, "images", rel)).convert("RGB")) for rel, _, _ in test])
    x = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255 - CLIP_MEAN) / CLIP_STD
    return x, torch.tensor([y for _, y, _ in test]), torch.tensor([labels[r]["background_label"] for r, _, _ in test])


def test_compact_file_matches_recorded_sha256():
    assert toy.COMPACT_FILE.is_file()
    assert toy.sha256_file(toy.COMPACT_FILE) == toy.COMPACT_SHA256
    assert toy.COMPACT_FILE.stat().st_size < 8e6
    readme = (toy.WEIGHTS_DIR / "README.md").read_text()
    assert toy.COMPACT_SHA256 in readme


def test_corrupt_compact_file_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    data = bytearray(toy.COMPACT_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        toy.toy_clip_weights(cache_dir=str(tmp_path / "c"), compact_path=str(bad))


def test_expansion_rebuilds_untrained_token_rows_from_the_rule(weights):
    compact = toy.load_compact(toy.COMPACT_FILE)
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    emb = sd[toy.TOKEN_KEY]
    assert emb.dtype == torch.float32 and list(emb.shape) == compact["token_shape"]
    rows = compact["token_rows"]
    assert torch.equal(emb[rows], compact["token_values"].float())
    # an independent rebuild of one untrained row: the documented init rule, through fp16
    rule = compact["token_init"]
    g = torch.Generator().manual_seed(rule["seed"])
    full = torch.randn(*compact["token_shape"], generator=g) * rule["std"]
    untrained = [r for r in (0, 1000, 30000, 49000) if r not in set(rows.tolist())]
    assert untrained
    for r in untrained:
        assert torch.equal(emb[r], full[r].half().float())
    # every other tensor is the stored fp16 value
    for k, v in compact["state_dict"].items():
        assert torch.equal(sd[k], v.float()), k


def test_loads_through_the_project_loader(weights, model, tmp_path, monkeypatch):
    """build_clip finds the packaged weights by name alone (expanded into $DAPT_CACHE)."""
    from dapt.models.clip import build_clip, find_weights

    monkeypatch.setenv("DAPT_CACHE", str(tmp_path / "cache"))
    found = find_weights(toy.TOY_MODEL)
    assert str(found).startswith(str(tmp_path / "cache"))
    assert torch.load(found, weights_only=True).keys() == torch.load(weights, weights_only=True).keys()
    m = build_clip(toy.TOY_MODEL)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m.encode_image(x), model.encode_image(x), atol=1e-6)


@torch.no_grad()
def _zero_shot(model, x, y, names, template):
    import open_clip

    tokens = open_clip.get_tokenizer(toy.TOY_MODEL)([template.format(n) for n in names])
    tf = F.normalize(model.encode_text(tokens), dim=-1)
    f = F.normalize(model.encode_image(x), dim=-1)
    return ((f @ tf.T).argmax(-1) == y).float().mean().item()


def test_zero_shot_object_accuracy_well_above_chance(model, test_split):
    x, y, _ = test_split
    acc = _zero_shot(model, x, y, scenes.OBJECTS, "a photo of a {}.")
    assert acc > OBJECT_ZERO_SHOT_BOUND


def test_zero_shot_background_accuracy_well_above_chance(model, test_split):
    x, _, b = test_split
    acc = _zero_shot(model, x, b, scenes.BACKGROUNDS, "a photo of {}.")
    assert acc > BACKGROUND_ZERO_SHOT_BOUND


def test_compact_round_trip_is_exact_and_byte_stable(tmp_path):
    """A model whose token embedding starts from the rule and is trained on a few rows: the compact
    file keeps only those rows, and expanding it gives back every tensor (through fp16)."""
    import open_clip

    from dapt.models.model_configs import register_model_configs

    register_model_configs()
    torch.manual_seed(0)
    m = open_clip.create_model(toy.TOY_MODEL)
    sd = m.state_dict()
    init = toy.token_embedding_init(49408, 128, seed=5, std=0.02)
    trained = init.clone()
    trained[[3, 320, 49407]] += 0.5
    sd[toy.TOKEN_KEY] = trained
    compact = toy.compact_state_dict(sd, init_seed=5, init_std=0.02)
    assert compact["token_rows"].tolist() == [3, 320, 49407]
    p1, p2 = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    toy.save_compact(compact, p1)
    toy.save_compact(compact, p2)
    assert p1.read_bytes() == p2.read_bytes()
    back = toy.expand_compact(toy.load_compact(p1))
    assert back.keys() == sd.keys()
    for k, v in sd.items():
        assert torch.equal(back[k], v.half().float()), k


def test_compact_of_a_warm_start_keeps_only_the_rows_it_trained():
    """A model warm-started from a compact file holds the rule's rows through fp16: they are still
    untouched, and expanding the new compact form gives back exactly the trained model."""
    vocab, width, seed, std = 300, 8, 7, 0.02
    emb = toy.token_embedding_init(vocab, width, seed, std).half().float()  # as expand_compact rebuilds them
    emb[[3, 150]] += 0.5  # trained rows
    sd = {toy.TOKEN_KEY: emb, "w": torch.ones(2, 2)}
    c = toy.compact_state_dict(sd, seed, std)
    assert c["token_rows"].tolist() == [3, 150]
    back = toy.expand_compact(c)
    assert torch.equal(back[toy.TOKEN_KEY], emb.half().float())
