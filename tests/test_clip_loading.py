import warnings

import pytest
import torch

from dapt.models.clip import WeightsNotFoundError, build_clip, read_state_dict, resolve_backbone_name


def test_openai_names_get_quickgelu():
    assert resolve_backbone_name("ViT-B/16") == ("ViT-B-16-quickgelu", True)
    assert resolve_backbone_name("RN50") == ("RN50-quickgelu", True)
    assert resolve_backbone_name("ViT-B-16") == ("ViT-B-16", False)
    with pytest.raises(ValueError, match="ViT-B/16"):
        resolve_backbone_name("ViT-B/61")


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("fmt", ["plain", "wrapped", "fp16", "safetensors", "torchscript"])
def test_weight_file_formats(tiny_name, tiny_clip, tmp_path, fmt):
    sd = {k: v.clone() for k, v in tiny_clip.state_dict().items()}
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "plain":
        torch.save(sd, path)
    elif fmt == "wrapped":
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, path)
    elif fmt == "fp16":
        sd = {k: v.half() for k, v in sd.items()}
        torch.save(sd, path)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:  # an OpenAI-style TorchScript archive
        img = torch.randn(1, 3, 32, 32)
        txt = torch.zeros(1, 77, dtype=torch.long)
        txt[0, :3] = torch.tensor([49406, 320, 49407])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(tiny_clip, (img, txt), strict=False, check_trace=False).save(str(path))
    model = build_clip(tiny_name, weights=str(path))
    if fmt == "fp16":
        ref = {k: v.half().float() for k, v in tiny_clip.state_dict().items()}
        assert all(torch.equal(model.state_dict()[k], ref[k]) for k in ref)
    else:
        assert _same(model, tiny_clip)
    assert model.training is False and not any(p.requires_grad for p in model.parameters())


def test_cache_folder_is_searched(tiny_name, tiny_clip, tmp_path):
    torch.save(tiny_clip.state_dict(), tmp_path / f"{tiny_name}.pt")
    assert _same(build_clip(tiny_name, cache_dir=str(tmp_path)), tiny_clip)


def test_missing_weights_say_where(tmp_path):
    with pytest.raises(WeightsNotFoundError) as e:
        build_clip("ViT-B/16", cache_dir=str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / "ViT-B-16.pt") in msg and "MODEL.BACKBONE.WEIGHTS" in msg
    # the exact file to download: OpenAI's ViT-B/16 archive (its sha256 is part of the address)
    assert "openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt" in msg
    assert "dapt-tiny-vit" in msg  # and how to run without any download
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        build_clip("ViT-B/16", weights=str(tmp_path / "nope.pt"))


def test_wrong_architecture_is_named(tiny_name, tmp_path):
    torch.save({"visual.conv1.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not match architecture"):
        build_clip(tiny_name, weights=str(tmp_path / "bad.pt"))
    assert read_state_dict(tmp_path / "bad.pt").keys() == {"visual.conv1.weight"}
