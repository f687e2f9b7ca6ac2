"""Loading CLIP through open_clip: backbone names, weight files, offline behaviour.

This is the one place that knows the checkpoint formats. Everything else receives an
``open_clip.CLIP`` in fp32, in eval mode, with every parameter frozen.
"""
from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Optional, Tuple

import torch

logger = logging.getLogger(__name__)

# OpenAI's released CLIP models: MaPLe/CoOp configs name them with a slash, and their
# weights were trained with QuickGELU.
OPENAI_NAMES = {
    "RN50": "RN50",
    "RN101": "RN101",
    "RN50x4": "RN50x4",
    "RN50x16": "RN50x16",
    "RN50x64": "RN50x64",
    "ViT-B/32": "ViT-B-32",
    "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14",
    "ViT-L/14@336px": "ViT-L-14-336",
}

# File names OpenAI's downloader uses, searched for in the cache folder.
OPENAI_FILES = {
    "RN50": "RN50.pt",
    "RN101": "RN101.pt",
    "RN50x4": "RN50x4.pt",
    "RN50x16": "RN50x16.pt",
    "RN50x64": "RN50x64.pt",
    "ViT-B/32": "ViT-B-32.pt",
    "ViT-B/16": "ViT-B-16.pt",
    "ViT-L/14": "ViT-L-14.pt",
    "ViT-L/14@336px": "ViT-L-14-336px.pt",
}

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".pth.tar")


class _DropRandomInitWarning(logging.Filter):
    """open_clip warns "No pretrained weights loaded ... initialized randomly" on the root logger
    whenever ``pretrained=None``; we load the weights ourselves right after, so it would mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def _create_model_quietly(oc_name: str):
    import open_clip

    root = logging.getLogger()
    flt = _DropRandomInitWarning()
    root.addFilter(flt)
    handlers = list(root.handlers)
    for h in handlers:
        h.addFilter(flt)
    try:
        return open_clip.create_model(oc_name, pretrained=None)
    finally:
        root.removeFilter(flt)
        for h in handlers:
            h.removeFilter(flt)


class WeightsNotFoundError(FileNotFoundError):
    """No usable weight file for the requested backbone."""


def default_cache_dir() -> Path:
    """``$DAPT_CACHE`` or ``~/.cache/dapt``."""
    return Path(os.environ.get("DAPT_CACHE", Path.home() / ".cache" / "dapt"))


def _register_packaged_configs() -> None:
    try:
        from dapt.models.model_configs import register_model_configs
    except ImportError:  # pragma: no cover - the package always ships its configs
        return
    register_model_configs()


def resolve_backbone_name(name: str) -> Tuple[str, bool]:
    """Map a MaPLe/CoOp name ("ViT-B/16") or an open_clip name to (open_clip name, is_openai).

    OpenAI names get open_clip's ``-quickgelu`` variant, because OpenAI trained with QuickGELU
    and loading their weights into a GELU model silently degrades every feature.
    """
    import open_clip

    _register_packaged_configs()
    if name in OPENAI_NAMES:
        base = OPENAI_NAMES[name]
        quick = base + "-quickgelu"
        return (quick if quick in open_clip.list_models() else base), True
    known = open_clip.list_models()
    if name in known:
        return name, False
    dashed = name.replace("/", "-")
    if dashed in known:
        return dashed, False
    import difflib

    close = difflib.get_close_matches(name, list(OPENAI_NAMES) + known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"MODEL.BACKBONE.NAME '{name}' is not a known CLIP architecture.{hint}")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def read_state_dict(path: Path) -> dict:
    """Read a CLIP state dict from any supported file: OpenAI TorchScript archive, plain or
    wrapped (``{"state_dict": ...}``, ``module.`` prefixes) state dict, or safetensors."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weight file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    elif _is_torchscript(path):
        # OpenAI's released .pt files are TorchScript archives; their state_dict has the
        # same key names as open_clip's CLIP.
        sd = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(sd).__name__})")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    for k in ("input_resolution", "context_length", "vocab_size"):
        sd.pop(k, None)  # TorchScript attributes stored next to the weights
    return sd


def _candidate_files(name: str, oc_name: str, cache_dir: Path):
    stems = {oc_name, name.replace("/", "-"), oc_name.replace("-quickgelu", "")}
    names = [OPENAI_FILES[name]] if name in OPENAI_FILES else []
    for stem in sorted(stems):
        names += [stem + s for s in WEIGHT_SUFFIXES]
    for n in names:
        yield cache_dir / n
        yield cache_dir / "clip" / n


def find_weights(name: str, weights: str = "", cache_dir: Optional[str] = None) -> Optional[Path]:
    """The local weight file for a backbone, or None if ``weights`` is a pretrained tag."""
    import open_clip

    oc_name, _ = resolve_backbone_name(name)
    if weights:
        p = Path(os.path.expanduser(weights))
        if p.is_file():
            return p
        if any(weights.endswith(s) for s in WEIGHT_SUFFIXES) or os.sep in weights:
            raise WeightsNotFoundError(
                f"MODEL.BACKBONE.WEIGHTS: file {weights} does not exist; fix the path or put the file there"
            )
        return None  # a pretrained tag such as "openai", resolved by open_clip
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    for cand in _candidate_files(name, oc_name, cache):
        if cand.is_file():
            return cand
    try:
        from dapt.models.toy import toy_weights_for

        toy = toy_weights_for(oc_name)
    except ImportError:
        toy = None
    if toy is not None:
        return Path(toy)
    where = cache / (OPENAI_FILES.get(name) or oc_name + ".pt")
    tags = [t for t in open_clip.list_pretrained_tags_by_model(oc_name)] if oc_name in open_clip.list_models() else []
    url = _download_url(oc_name, tags)
    get = f"download {url} to {where}" if url else f"put the weight file at {where}"
    tag_hint = f", or set MODEL.BACKBONE.WEIGHTS to a pretrained tag ({', '.join(tags[:3])}) with network access" if tags else ""
    raise WeightsNotFoundError(
        f"no weights for backbone '{name}': {get} (OpenAI .pt archive, state dict or .safetensors), "
        f"or set MODEL.BACKBONE.WEIGHTS /path/to/file{tag_hint}; no download needed for the embedded "
        f"testbed: MODEL.BACKBONE.NAME dapt-tiny-vit"
    )


def _download_url(oc_name: str, tags) -> str:
    """Where the weights of ``oc_name`` can be downloaded (OpenAI's own file when there is one);
    read from open_clip's table, without any network access."""
    import open_clip

    for tag in (["openai"] if "openai" in tags else []) + list(tags):
        try:
            url = open_clip.get_pretrained_url(oc_name, tag)
        except Exception:  # noqa: BLE001  (an entry without a url)
            url = ""
        if url:
            return url
    return ""


def build_clip(name: str, weights: str = "", cache_dir: Optional[str] = None, pretrained: bool = True):
    """Create an fp32, frozen, eval-mode open_clip CLIP for a backbone name.

    ``pretrained=False`` gives random weights (tests, debugging); otherwise weights come from
    ``weights`` (a file or a pretrained tag) or from the cache folder.
    """
    import open_clip

    oc_name, is_openai = resolve_backbone_name(name)
    model = None
    if not pretrained:
        model = open_clip.create_model(oc_name, pretrained=None)
        logger.info("Built %s with random weights (MODEL.BACKBONE.PRETRAINED False)", oc_name)
    else:
        path = find_weights(name, weights, cache_dir)
        if path is None:
            try:
                model = open_clip.create_model(oc_name, pretrained=weights)
            except Exception as exc:  # network errors, unknown tags
                raise WeightsNotFoundError(
                    f"could not load pretrained tag '{weights}' for '{name}' ({type(exc).__name__}: {exc}); "
                    f"offline, download the weights once and set MODEL.BACKBONE.WEIGHTS to the file"
                ) from exc
            logger.info("Loaded %s with pretrained tag '%s'", oc_name, weights)
        else:
            model = _create_model_quietly(oc_name)
            sd = read_state_dict(path)
            sd.pop("attn_mask", None)  # a buffer TorchScript archives carry; rebuilt by open_clip
            try:
                missing, unexpected = model.load_state_dict(sd, strict=False)
            except RuntimeError as exc:
                first = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
                raise ValueError(f"{path} does not match architecture {oc_name} ({first}); check MODEL.BACKBONE.NAME") from None
            missing = [k for k in missing if k != "attn_mask"]
            if missing or unexpected:
                raise ValueError(
                    f"{path} does not match architecture {oc_name}: {len(missing)} missing keys "
                    f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); "
                    f"check MODEL.BACKBONE.NAME"
                )
            logger.info("Loaded %s weights from %s", oc_name, path)
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def get_tokenizer(name: str):
    """open_clip's tokenizer for a backbone (the BPE vocabulary ships with open_clip)."""
    import open_clip

    oc_name, _ = resolve_backbone_name(name)
    return open_clip.get_tokenizer(oc_name)


def build_clip_from_cfg(cfg):
    """``build_clip`` with the MODEL.BACKBONE.* keys."""
    b = cfg.MODEL.BACKBONE
    model = build_clip(b.NAME, weights=b.WEIGHTS, cache_dir=b.CACHE_DIR or None, pretrained=b.PRETRAINED)
    # read by PromptedTextEncoder(model) (the methods' text towers): class chunks with checkpointing
    model.text_chunk_size = int(cfg.MODEL.TEXT_CHUNK_SIZE)
    return model
