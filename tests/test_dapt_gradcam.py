"""Grad-CAM masks (DAPT-G) against a direct autograd computation; batched equals one at a time."""
import pytest
import torch
import torch.nn.functional as F

from dapt.config import get_cfg_default
from dapt.decouple.gradcam import GradCamMasker
from dapt.decouple.wrapper import MaskBank
from dapt.trainers.coop import CoOpMethod

CLASSES = ["dog", "cat", "sea lion"]


@pytest.fixture(scope="module")
def coop(tiny_clip, tokenizer):
    cfg = get_cfg_default()
    cfg.TRAINER.COOP.N_CTX = 4
    torch.manual_seed(0)
    return CoOpMethod(cfg, CLASSES, tiny_clip, tokenizer).eval()


def direct_cam(clip, text, image, label):
    """Independent path: run the ViT by hand, take A = ln_1 of the last block as a leaf, autograd."""
    v = clip.visual
    x = v._embeds(image[None])
    for blk in v.transformer.resblocks[:-1]:
        x = blk(x)
    last = v.transformer.resblocks[-1]
    a = last.ln_1(x).detach().requires_grad_(True)
    y = x + last.ls_1(last.attention(q_x=a))
    y = y + last.ls_2(last.mlp(last.ln_2(y)))
    pooled, _ = v._pool(y)
    z = F.normalize(pooled @ v.proj, dim=-1)
    score = (z @ F.normalize(text, dim=-1)[label])[0]
    g, = torch.autograd.grad(score, a)
    n = v.grid_size[0] * v.grid_size[1]
    cam = F.relu((g[0, 1:1 + n] * a[0, 1:1 + n]).mean(-1))
    alpha = g[0, 1:1 + n].mean(0)
    cam_sm = F.relu(a[0, 1:1 + n].detach() @ alpha)
    return cam.reshape(v.grid_size), cam_sm.reshape(v.grid_size)


def test_cam_equals_direct_autograd(coop, tiny_clip):
    torch.manual_seed(1)
    img = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        text = coop.encode_text()
    ref, ref_sm = direct_cam(tiny_clip, text, img[0], 2)
    raw = GradCamMasker().raw_cam(coop, img, torch.tensor([2]))
    assert raw.shape == (1, 4, 4) and ref.abs().sum() > 0
    assert torch.allclose(raw[0], ref, atol=1e-6, rtol=1e-4)
    raw_sm = GradCamMasker(weighting="spatial_mean").raw_cam(coop, img, torch.tensor([2]))
    assert torch.allclose(raw_sm[0], ref_sm, atol=1e-6, rtol=1e-4)
    assert not any(p.grad is not None for p in coop.parameters())  # the CAM pass leaves no parameter gradients


def test_batched_equals_one_at_a_time(coop):
    torch.manual_seed(2)
    imgs = torch.randn(3, 3, 32, 32)
    labels = torch.tensor([0, 2, 1])
    m = GradCamMasker()
    batched = m.raw_cam(coop, imgs, labels)
    single = torch.cat([m.raw_cam(coop, imgs[i:i + 1], labels[i:i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-6, rtol=1e-4)


def test_batched_equals_single_with_maple_prompts(tiny_clip, tokenizer):
    from dapt.trainers.maple import MaPLeMethod

    cfg = get_cfg_default()
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 2
    torch.manual_seed(0)
    maple = MaPLeMethod(cfg, CLASSES, tiny_clip, tokenizer).eval()
    imgs = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([1, 0])
    m = GradCamMasker()
    batched = m.raw_cam(maple, imgs, labels)
    single = torch.cat([m.raw_cam(maple, imgs[i:i + 1], labels[i:i + 1]) for i in range(2)])
    assert batched.shape == (2, 4, 4) and batched.abs().sum() > 0
    assert torch.allclose(batched, single, atol=1e-6, rtol=1e-4)


def test_postprocess_hand():
    cam = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[1.0, 1.5], [2.0, 3.0]]])
    m = GradCamMasker(threshold=0.5)
    # per image min-max: img0 (0, .25, .5, 1), img1 (0, .25, .5, 1); g > .5 strictly
    out = m.postprocess(cam, (2, 2))
    assert out.tolist() == [[[0, 0], [0, 1]], [[0, 0], [0, 1]]]
    assert GradCamMasker(threshold_op="ge").postprocess(cam, (2, 2)).tolist() == [[[0, 0], [1, 1]], [[0, 0], [1, 1]]]
    # official: divide by the batch max (4 + 1e-6), ge .5: img0 (0, .25, .49999, 1); img1 (.25, .375, .625, .75)
    cam[1, 1, 0] = 2.5
    off = GradCamMasker(norm="batch_max", threshold_op="ge").postprocess(cam, (2, 2))
    assert off.tolist() == [[[0, 0], [0, 1]], [[0, 0], [1, 1]]]
    up = m.postprocess(cam[:1], (8, 8))
    assert up.shape == (1, 8, 8) and up[0, -1, -1] == 1 and up[0, 0, 0] == 0


def test_refresh_fills_bank_and_restores_mode(coop):
    torch.manual_seed(3)
    batches = [{"img": torch.randn(2, 3, 32, 32), "label": torch.tensor([0, 1]), "index": torch.tensor([0, 1])},
               {"img": torch.randn(1, 3, 32, 32), "label": torch.tensor([2]), "index": torch.tensor([2])}]
    bank = MaskBank(3, (32, 32))
    coop.train()
    stats = GradCamMasker().refresh(coop, batches, bank, torch.device("cpu"))
    assert coop.training and bank.filled.all() and stats["num"] == 3
    direct = GradCamMasker()(coop, batches[1]["img"], batches[1]["label"])
    assert (torch.from_numpy(bank.get(2)).float() == direct[0]).all()
    assert 0 < bank.foreground_fraction() < 1
    coop.eval()


def full_graph_cam(method, images, targets, text):
    """The CAM as computed before the graph-free prefix: the whole image pass under autograd, the
    ln_1 output of the last block swapped for a leaf by a forward hook (weighting elementwise)."""
    store = {}
    norm = method.clip_model.visual.transformer.resblocks[-1].ln_1

    def hook(_m, _i, out):
        store["a"] = out.detach().requires_grad_(True)
        return store["a"]

    handle = norm.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            z = F.normalize(method.encode_image(images).float(), dim=-1)
            score = (z @ F.normalize(text.float(), dim=-1).t()).gather(1, targets.view(-1, 1)).sum()
            g, = torch.autograd.grad(score, store["a"])
    finally:
        handle.remove()
    n = method.clip_model.visual.grid_size[0] * method.clip_model.visual.grid_size[1]
    a = store["a"].detach()
    return F.relu((g[:, 1:1 + n] * a[:, 1:1 + n]).mean(-1)).reshape(-1, *method.clip_model.visual.grid_size)


@pytest.mark.parametrize("name", ["MaPLe", "VPT", "IVLP", "CoOp"])
def test_graph_free_prefix_changes_no_cam_and_records_no_prefix_graph(tiny_clip, tokenizer, name):
    import importlib

    cfg = get_cfg_default()
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 2  # deep prompts in the prefix block and the last one
    cfg.TRAINER.VPT.PROMPT_DEPTH_VISION = 2
    cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 2
    module = importlib.import_module(f"dapt.methods.{name.lower()}")
    torch.manual_seed(0)
    method = getattr(module, f"{name}Method")(cfg, CLASSES, tiny_clip, tokenizer).eval()
    with torch.no_grad():  # random prompts, so that every prompt token matters
        for p in method.parameters():
            if p.requires_grad:
                p.add_(0.5 * torch.randn_like(p))
    torch.manual_seed(4)
    imgs, labels = torch.randn(3, 3, 32, 32), torch.tensor([2, 0, 1])
    with torch.no_grad():
        text = method.encode_text()
    ref = full_graph_cam(method, imgs, labels, text)
    seen = []
    last = method.clip_model.visual.transformer.resblocks[-1]
    h = last.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].requires_grad))
    try:
        raw = GradCamMasker().raw_cam(method, imgs, labels, text_features=text)
    finally:
        h.remove()
    assert ref.abs().sum() > 0
    assert torch.equal(raw, ref), (raw - ref).abs().max()  # bit for bit, not just close
    m = GradCamMasker()
    assert torch.equal(m.postprocess(raw, (32, 32)), m.postprocess(ref, (32, 32)))
    assert seen == [False]  # the tokens entering the last block carry no graph
    # the caller's grad mode is restored, whichever it was
    with torch.no_grad():
        GradCamMasker().raw_cam(method, imgs, labels, text_features=text)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
