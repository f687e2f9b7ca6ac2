"""Zero-shot CLIP vs MaPLe vs MaPLe+DAPT-G vs MaPLe+DAPT-S on the objects-on-scenes testbed.

Every run is an ordinary train.py run (same config files, same output folders); this module only
builds the configs, runs them in-process and collects the final test results.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

logger = logging.getLogger(__name__)

# shipped configs: found in the working directory first, then among the package's (dapt.config.paths)
DATASET_CONFIG = "configs/datasets/objects_on_scenes.yaml"
TRAINER_CONFIG = "configs/trainers/MaPLe/toy_scenes.yaml"


def config_path(name: str) -> str:
    """The file ``name`` resolves to, relative to the working directory when it lies below it."""
    from dapt.config.paths import resolve_config

    path = os.path.abspath(resolve_config(name))
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel

# name -> (trainer, DAPT mode or None)
METHODS = {
    "zero-shot CLIP": ("ZeroshotCLIP", None),
    "MaPLe": ("MaPLe", None),
    "MaPLe+DAPT-G": ("MaPLe", "dapt-g"),
    "MaPLe+DAPT-S": ("MaPLe", "dapt-s"),
}


@dataclass
class RunSpec:
    method: str
    seed: int = 1
    p: float = 0.9
    shots: int = -1
    subsample: str = "all"  # all | base | new
    epochs: Optional[int] = None
    model_dir: str = ""  # evaluate these prompts (base-to-novel test) instead of training

    def tag(self) -> str:
        sub = "" if self.subsample == "all" else f"_{self.subsample}"
        shots = "all" if self.shots <= 0 else f"{self.shots}shot"
        return f"p{self.p:g}_{shots}{sub}/{self.method.replace('+', '_').replace(' ', '_')}/seed{self.seed}"


def build_cfg(spec: RunSpec, output_dir: str, extra_opts: Sequence[str] = ()):
    """The config train.py would build for this run."""
    from dapt.config import get_cfg_default, merge_from_file, merge_from_list

    trainer, mode = METHODS[spec.method]
    cfg = get_cfg_default()  # defaults <- dataset config <- trainer config <- flags <- overrides, as train.py
    merge_from_file(cfg, config_path(DATASET_CONFIG))
    merge_from_file(cfg, config_path(TRAINER_CONFIG))
    cfg.SEED = spec.seed
    cfg.TRAINER.NAME = trainer
    cfg.OUTPUT_DIR = output_dir
    if mode:
        cfg.DAPT.ENABLED = True
        cfg.DAPT.MASK.SOURCE = "gradcam" if mode == "dapt-g" else "precomputed"
    opts = ["DATASET.SCENES.P", str(spec.p), "DATASET.NUM_SHOTS", str(spec.shots),
            "DATASET.SUBSAMPLE_CLASSES", spec.subsample, "VERBOSE", "False"]
    if spec.epochs is not None:
        opts += ["OPTIM.MAX_EPOCH", str(spec.epochs)]
    merge_from_list(cfg, opts + list(extra_opts))
    cfg.freeze()
    return cfg


def command_line(spec: RunSpec, output_dir: str) -> str:
    """The equivalent train.py command, for the user to rerun one cell."""
    trainer, mode = METHODS[spec.method]
    parts = ["python train.py", f"--seed {spec.seed}", f"--trainer {trainer}",
             f"--dataset-config-file {config_path(DATASET_CONFIG)}",
             f"--config-file {config_path(TRAINER_CONFIG)}", f"--output-dir {output_dir}"]
    if mode:
        parts.append(f"--mode {mode}")
    if spec.model_dir:
        parts += [f"--model-dir {spec.model_dir}", "--eval-only"]
    parts += [f"DATASET.SCENES.P {spec.p:g}", f"DATASET.NUM_SHOTS {spec.shots}",
              f"DATASET.SUBSAMPLE_CLASSES {spec.subsample}"]
    if spec.epochs is not None:
        parts.append(f"OPTIM.MAX_EPOCH {spec.epochs}")
    return " ".join(parts)


def run(spec: RunSpec, output_root: str, extra_opts: Sequence[str] = (), console: bool = False) -> Dict[str, float]:
    """Train (or evaluate) one run; return its final test results."""
    from dapt.launch import evaluate, train

    out = os.path.join(output_root, spec.tag())
    cfg = build_cfg(spec, out, extra_opts)
    trainer_name = METHODS[spec.method][0]
    if trainer_name == "ZeroshotCLIP" or spec.model_dir:
        trainer = evaluate(cfg, model_dir=spec.model_dir, console=console)
    else:
        trainer = train(cfg, console=console)
    return dict(trainer.last_results)


def final_mask_iou(run_dir: str) -> Optional[float]:
    """The last epoch's mask IoU against the exact masks (``mask_quality.json`` of a DAPT run), or None."""
    import json

    path = os.path.join(run_dir, "mask_quality.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            entries = json.load(f)
        return float(entries[-1]["iou"]) if entries else None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        logger.warning("%s: unreadable (%s); no mask IoU", path, exc)
        return None


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
