"""The toy CLIP that ships with dapt: ``dapt-tiny-vit`` pretrained on objects-on-scenes captions.

The package holds a compact checkpoint (``weights/dapt-tiny-vit.compact.safetensors``, a few MB): every
tensor in fp16, except that of the 49408-row token embedding it stores only the rows that
pretraining changed. The other rows never received a gradient (the embedding is trained without
weight decay), so they still equal their initialisation, which a fixed rule rebuilds exactly:
``torch.randn(vocab, width, generator=torch.Generator().manual_seed(seed)) * std``. On first use
the compact file is checked against the sha256 recorded here, expanded into a plain fp32 open_clip
state dict in the cache folder, and that file's path is returned.

``tools/pretrain_toy_clip.py`` makes the compact file; ``weights/README.md`` records the command.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Dict, Optional

import torch

logger = logging.getLogger(__name__)

TOY_MODEL = "dapt-tiny-vit"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
COMPACT_FILE = WEIGHTS_DIR / f"{TOY_MODEL}.compact.safetensors"
# sha256 of the shipped compact file (see weights/README.md for the command that makes it)
COMPACT_SHA256 = "47f36433b6145988baa519893b40347cfbe61d4d5a9e6c16ac1313c6fcd0178a"
COMPACT_FORMAT = "dapt-compact-v1"
TOKEN_KEY = "token_embedding.weight"


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def token_embedding_init(vocab_size: int, width: int, seed: int, std: float) -> torch.Tensor:
    """The rule that initialises (and later rebuilds) the toy model's token embedding."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(vocab_size, width, generator=g) * std


def compact_state_dict(state_dict: Dict[str, torch.Tensor], init_seed: int, init_std: float) -> dict:
    """The compact form of a state dict whose token embedding started from ``token_embedding_init``."""
    emb = state_dict[TOKEN_KEY].detach().float()
    init = token_embedding_init(emb.shape[0], emb.shape[1], init_seed, init_std)
    # untouched: still the rule, in fp32 (a fresh model) or through fp16 (a model warm-started from a
    # compact checkpoint, whose rebuilt rows went through fp16; see expand_compact)
    untouched = (emb == init).all(dim=1) | (emb == init.half().float()).all(dim=1)
    rows = torch.nonzero(~untouched).flatten()
    rest = {k: v.detach().to(torch.float16) if v.is_floating_point() else v.detach()
            for k, v in state_dict.items() if k != TOKEN_KEY}
    return {
        "format": COMPACT_FORMAT,
        "model": TOY_MODEL,
        "state_dict": rest,
        "token_rows": rows.to(torch.int64),
        "token_values": emb[rows].to(torch.float16),
        "token_shape": list(emb.shape),
        "token_init": {"seed": int(init_seed), "std": float(init_std)},
    }


def save_compact(compact: dict, path) -> None:
    """Write a compact checkpoint as safetensors: byte-identical for identical weights (torch.save
    is not: it stores a random serialization id), so its sha256 identifies the weights."""
    from safetensors.torch import save_file

    tensors = {"sd." + k: v.contiguous() for k, v in compact["state_dict"].items()}
    tensors["token_rows"] = compact["token_rows"].contiguous()
    tensors["token_values"] = compact["token_values"].contiguous()
    meta = {"format": compact["format"], "model": compact["model"], "token_shape": list(compact["token_shape"]),
            "token_init": compact["token_init"]}
    # one metadata entry: safetensors writes several in a random order
    save_file(tensors, str(path), metadata={"dapt": json.dumps(meta, sort_keys=True)})


def load_compact(path) -> dict:
    """Read a compact checkpoint written by ``save_compact``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("dapt", "{}"))
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != COMPACT_FORMAT:
        raise ValueError(f"{path} is not a {COMPACT_FORMAT} checkpoint (format {meta.get('format')!r})")
    return {
        "format": meta["format"],
        "model": meta.get("model", ""),
        "state_dict": {k[3:]: v for k, v in tensors.items() if k.startswith("sd.")},
        "token_rows": tensors["token_rows"],
        "token_values": tensors["token_values"],
        "token_shape": [int(n) for n in meta["token_shape"]],
        "token_init": {"seed": int(meta["token_init"]["seed"]), "std": float(meta["token_init"]["std"])},
    }


def expand_compact(compact: dict) -> Dict[str, torch.Tensor]:
    """The full fp32 open_clip state dict of a compact checkpoint."""
    if compact.get("format") != COMPACT_FORMAT:
        raise ValueError(f"not a {COMPACT_FORMAT} checkpoint (format {compact.get('format')!r})")
    vocab, width = compact["token_shape"]
    rule = compact["token_init"]
    # rebuilt rows go through fp16 like every stored tensor, so the whole model is fp16-exact
    emb = token_embedding_init(vocab, width, rule["seed"], rule["std"]).half().float()
    emb[compact["token_rows"]] = compact["token_values"].float()
    sd = {k: v.float() if v.is_floating_point() else v for k, v in compact["state_dict"].items()}
    sd[TOKEN_KEY] = emb
    return sd


def _cache_dir() -> Path:
    return Path(os.environ.get("DAPT_CACHE") or Path.home() / ".cache" / "dapt")


def toy_clip_weights(cache_dir: Optional[str] = None, compact_path: Optional[str] = None,
                     expected_sha256: Optional[str] = None) -> str:
    """Path of the toy CLIP's full fp32 state dict, expanded from the packaged compact file on first use.

    The compact file must match ``COMPACT_SHA256`` (or ``expected_sha256``); the expanded file is
    named after that hash, so a new release never reuses a stale expansion.
    """
    src = Path(compact_path) if compact_path else COMPACT_FILE
    expected = expected_sha256 or COMPACT_SHA256
    if not src.is_file():
        raise FileNotFoundError(f"toy CLIP weights {src} are missing; reinstall dapt or rebuild them with "
                                "tools/pretrain_toy_clip.py (see dapt/models/weights/README.md)")
    out_dir = Path(cache_dir) if cache_dir else _cache_dir()
    out = out_dir / "clip" / f"{TOY_MODEL}-{expected[:16]}.pt"
    if out.is_file():
        return str(out)
    digest = sha256_file(src)
    if digest != expected:
        raise ValueError(f"{src} has sha256 {digest}, expected {expected}; the file is corrupt or was rebuilt "
                         "without updating COMPACT_SHA256 in dapt/models/toy.py")
    sd = expand_compact(load_compact(src))
    from dapt.utils.atomic import atomic_torch_save

    atomic_torch_save(sd, out)
    logger.info("Expanded toy CLIP weights %s into %s", src.name, out)
    return str(out)


def toy_weights_for(oc_name: str) -> Optional[str]:
    """The packaged weights of an open_clip model name, or None if dapt ships none for it."""
    if oc_name != TOY_MODEL:
        return None
    return toy_clip_weights()
