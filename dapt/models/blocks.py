"""Running open_clip's residual attention blocks on a contiguous sequence-first tensor.

open_clip keeps its transformers batch-first ``(N, L, D)``; ``nn.MultiheadAttention`` with
``batch_first=True`` then transposes to a non-contiguous ``(L, N, D)`` view before the
attention, and with autograd on the projections and batched matmuls run on that strided
layout, which is slower on CPU. ``block_seq_first`` computes the same block (same modules, same
weights, same ``F.multi_head_attention_forward`` call the module makes) on a contiguous
``(L, N, D)`` tensor.

The fast layout is used only where it changes nothing:
- with autograd recording (without it ``nn.MultiheadAttention`` takes its fused inference
  kernel, whose round-off differs by ~2e-6; that path is kept as it is);
- on the standard ``ResidualAttentionBlock`` (an ``nn.MultiheadAttention`` self-attention);
- when no forward hook sits on the block or its submodules (a hook, e.g. Grad-CAM's on
  ``ln_1``, sees the batch-first tokens as documented).

``autograd_layout()`` makes a pass that records no graph take the sequence-first layout too, so
that it computes bit for bit what the same pass computes with gradients (Grad-CAM runs the blocks
before its target layer without a graph: it needs gradients from the last block on only).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def _has_hooks(block: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in block.modules())


_LAYOUT = threading.local()


@contextlib.contextmanager
def autograd_layout() -> Iterator[None]:
    """Inside: blocks take the sequence-first layout even when no graph is recorded (as they do when
    their input requires grad), so a no-grad pass equals the same pass with gradients exactly."""
    previous = getattr(_LAYOUT, "forced", False)
    _LAYOUT.forced = True
    try:
        yield
    finally:
        _LAYOUT.forced = previous


def seq_first_ok(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block`` may run sequence-first on ``x`` without changing a result or a hook."""
    if not (getattr(_LAYOUT, "forced", False) or (torch.is_grad_enabled() and x.requires_grad)):
        return False
    attn = getattr(block, "attn", None)
    if not isinstance(attn, nn.MultiheadAttention) or not attn._qkv_same_embed_dim or attn.in_proj_weight is None:
        return False
    if hasattr(block, "ln_1_kv") or not all(hasattr(block, a) for a in ("ln_1", "ls_1", "ln_2", "mlp", "ls_2")):
        return False
    return not _has_hooks(block)


def block_seq_first(block: nn.Module, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One ``ResidualAttentionBlock`` on a sequence-first ``(L, N, D)`` tensor."""
    attn = block.attn
    h = block.ln_1(x)
    mask = attn_mask.to(h.dtype) if attn_mask is not None else None
    a = F.multi_head_attention_forward(
        h, h, h, attn.embed_dim, attn.num_heads, attn.in_proj_weight, attn.in_proj_bias, attn.bias_k, attn.bias_v,
        attn.add_zero_attn, attn.dropout, attn.out_proj.weight, attn.out_proj.bias, training=attn.training,
        need_weights=False, attn_mask=mask)[0]
    x = x + block.ls_1(a)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


class LayoutTracker:
    """Holds the token tensor in whichever layout the next block wants, converting lazily.

    ``seq_first`` tells the current layout; ``batch_first()`` gives an ``(N, L, D)`` view.
    """

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.seq_first = False

    def batch_first(self) -> torch.Tensor:
        return self.x.transpose(0, 1) if self.seq_first else self.x

    def run(self, block: nn.Module, attn_mask: Optional[torch.Tensor] = None) -> None:
        if seq_first_ok(block, self.x):
            if not self.seq_first:
                self.x = self.x.transpose(0, 1).contiguous()
                self.seq_first = True
            self.x = block_seq_first(block, self.x, attn_mask)
        else:
            x = self.batch_first()
            self.seq_first = False
            self.x = block(x, attn_mask=attn_mask) if attn_mask is not None else block(x)

    def splice(self, start: int, stop: int, tokens: torch.Tensor) -> None:
        """Replace token positions ``[start, stop)`` by ``tokens`` (N, k, D), in the current layout."""
        if self.seq_first:
            x = self.x
            self.x = torch.cat([x[:start], tokens.transpose(0, 1), x[stop:]], dim=0)
        else:
            x = self.x
            self.x = torch.cat([x[:, :start], tokens, x[:, stop:]], dim=1)

    @property
    def length(self) -> int:
        return self.x.shape[0 if self.seq_first else 1]
