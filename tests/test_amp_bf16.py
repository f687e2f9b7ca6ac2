"""bf16 autocast (the GPU ``PREC bf16`` path, run here on CPU) stays close to fp32: MaPLe logits,
the loss, prompt gradients and DAPT-G Grad-CAM masks.

Tolerances follow bf16's 8-bit mantissa (relative step 2^-8 = 0.4%): features agree to cosine
> 0.99, logits (scale ~14 at init on the tiny model) within 0.5, and at least 85% of the binary
mask pixels agree (a threshold flips pixels whose CAM sits near it).
"""
import torch
import torch.nn.functional as F

from dapt.decouple.gradcam import GradCamMasker
from dapt.engine.build import build_trainer
from engine_fixtures import make_dm
from test_engine import cfg_for


def _maple(tiny_name, tmp_path):
    cfg = cfg_for(tiny_name, tmp_path, **{"TRAINER.NAME": "MaPLe", "TRAINER.MAPLE.PROMPT_DEPTH": 2,
                                          "TRAINER.MAPLE.PREC": "bf16", "USE_CUDA": False})
    torch.manual_seed(0)
    t = build_trainer(cfg, dm=make_dm())
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # move the prompts off their initialisation
        for p in t.model.learnable_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return t


def test_bf16_autocast_forward_loss_grads_close_to_fp32(tiny_name, tmp_path):
    t = _maple(tiny_name, tmp_path)
    assert type(t).__name__ == "MaPLe"
    m = t.model.eval()
    torch.manual_seed(1)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    params = list(m.learnable_parameters().values())

    def run():
        losses, logits = m.losses(images, labels)
        loss = sum(losses.values())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return m.encode_image(images).float(), logits.float(), loss.float(), grads

    f32, l32, loss32, g32 = run()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f16, l16, loss16, g16 = run()
    assert l16.dtype == torch.float32 and loss16.dtype == torch.float32
    assert F.cosine_similarity(f16, f32).min() > 0.99
    assert (l16 - l32).abs().max() < 0.5
    assert abs(loss16.item() - loss32.item()) < 0.05 * max(1.0, loss32.item())
    for a, b in zip(g16, g32):
        if b is None:
            continue
        assert torch.isfinite(a).all()
        assert F.cosine_similarity(a.flatten().float(), b.flatten(), dim=0) > 0.95


def test_bf16_gradcam_masks_close_to_fp32(tiny_name, tmp_path):
    m = _maple(tiny_name, tmp_path).model.eval()
    torch.manual_seed(2)
    images, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    masker = GradCamMasker()
    cam32 = masker.raw_cam(m, images, labels)
    m32 = masker(m, images, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cam16 = masker.raw_cam(m, images, labels)
        m16 = masker(m, images, labels)
    assert cam16.dtype == torch.float32 and torch.isfinite(cam16).all()
    assert cam32.abs().sum() > 0
    rel = (cam16 - cam32).abs().max() / cam32.abs().max()
    assert rel < 0.1, rel
    assert set(m16.unique().tolist()) <= {0.0, 1.0}
    agree = (m16 == m32).float().mean()
    print(f"bf16 vs fp32: CAM max rel diff {rel:.4f}, mask agreement {agree:.4f}")
    assert agree >= 0.85
