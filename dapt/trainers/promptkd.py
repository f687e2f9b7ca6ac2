"""The PromptKD trainer: teacher loading, the transductive data protocol, student checkpoints.

- Teacher: a PromptSRC model on TRAINER.PROMPTKD.TEACHER_NAME (any backbone), built over ALL the
  dataset's classes and loaded from TEACHER_CKPT (upstream's ``VLPromptLearner`` checkpoints, whole
  model in fp16 with class-dependent buffers, or ours); frozen, eval mode. Empty TEACHER_CKPT means
  upstream's location: ``teacher_model/<DATASET.NAME>/VLPromptLearner/model-best.pth.tar``
  (base2novel) or ``teacher_model/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20`` (cross).
- Data (TRAINER.MODAL base2novel, as upstream): the student trains on the training images of all
  classes without their labels -- transductive for the novel classes; "val" is the base classes'
  test images, "test" the novel classes' test images (the base classes' with DATASET.SUBSAMPLE_CLASSES
  base, so that a base-to-novel sweep reads base accuracy from its training run as for the other
  methods), each scored against its own classes' teacher text features. MODAL cross: the dataset as
  configured (DATASET.SUBSAMPLE_CLASSES).
- Checkpoints: ``VLPromptLearner/`` with upstream's names: the student's visual prompts and the
  projector ``VPT_image_trans.conv1.*`` (BatchNorm running statistics included).
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Dict

import torch

from dapt.config import CN, register_config
from dapt.engine.build import TRAINER_REGISTRY
from dapt.methods.promptkd import PromptKDMethod
from dapt.trainers.base import PromptTrainer

if TYPE_CHECKING:
    from dapt.methods.promptsrc import PromptSRCMethod

logger = logging.getLogger(__name__)

# class-dependent buffers in upstream checkpoints (rebuilt from the current class names)
CLASS_BUFFERS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix", "prompt_learner.token_prefix2",
                 "prompt_learner.token_suffix2")
BN_PREFIX = "VPT_image_trans.conv1.1."
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@register_config
def add_promptkd_config(cfg):
    cfg.TRAINER.MODAL = "base2novel"  # PromptKD protocol: base2novel (train on all classes' images) | cross
    cfg.TRAINER.PROMPTKD = CN()
    cfg.TRAINER.PROMPTKD.N_CTX_VISION = 4  # student visual prompt tokens per prompted layer
    cfg.TRAINER.PROMPTKD.N_CTX_TEXT = 4  # teacher text context tokens (as upstream, which builds the teacher with it)
    cfg.TRAINER.PROMPTKD.CTX_INIT = "a photo of a"  # teacher's text prompt words (as upstream)
    cfg.TRAINER.PROMPTKD.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (autocast on CUDA; CPU runs fp32)
    cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_VISION = 9  # student's prompted image layers
    cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_TEXT = 9  # kept for upstream configs: the student has no text tower
    cfg.TRAINER.PROMPTKD.PROJECT_LAYER = 2  # upstream declares it, never reads it (the projector has 2 layers); warns if changed
    cfg.TRAINER.PROMPTKD.CE_WEIGHT = 0.0  # upstream declares it, never reads it (no labels are used); warns if non-zero
    cfg.TRAINER.PROMPTKD.KD_WEIGHT = 1.0  # weight of the distillation loss (upstream's scripts: 1000, or 200)
    cfg.TRAINER.PROMPTKD.TEMPERATURE = 1.0  # distillation temperature T (the KL is scaled by T^2)
    cfg.TRAINER.PROMPTKD.TEACHER_NAME = "ViT-L/14"  # the teacher's CLIP backbone
    cfg.TRAINER.PROMPTKD.TEACHER_WEIGHTS = ""  # the teacher backbone's CLIP weight file (empty: looked up as MODEL.BACKBONE.WEIGHTS is)
    cfg.TRAINER.PROMPTKD.TEACHER_CKPT = ""  # the trained teacher's PromptSRC checkpoint file (empty: upstream's teacher_model/ path)
    cfg.TRAINER.PROMPTKD.TEACHER_N_CTX_VISION = 4  # teacher's visual prompt tokens (upstream hard-codes 4)
    cfg.TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION = 9  # teacher's prompted image layers (upstream hard-codes 9)
    cfg.TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT = 9  # teacher's prompted text layers (upstream hard-codes 9)


def teacher_checkpoint_path(cfg) -> Path:
    c = cfg.TRAINER.PROMPTKD
    if c.TEACHER_CKPT:
        return Path(c.TEACHER_CKPT).expanduser()
    if cfg.TRAINER.MODAL == "cross":
        return Path("teacher_model") / "ImageNet-xd" / "VLPromptLearner_large" / "model.pth.tar-20"
    return Path("teacher_model") / cfg.DATASET.NAME / "VLPromptLearner" / "model-best.pth.tar"


def teacher_cfg(cfg):
    """The PromptSRC config of the teacher: its backbone and prompt shape from TRAINER.PROMPTKD."""
    c = cfg.TRAINER.PROMPTKD
    tcfg = cfg.clone()
    tcfg.defrost()
    tcfg.MODEL.BACKBONE.NAME = c.TEACHER_NAME
    tcfg.MODEL.BACKBONE.WEIGHTS = c.TEACHER_WEIGHTS
    s = tcfg.TRAINER.PROMPTSRC
    s.N_CTX_TEXT, s.CTX_INIT = c.N_CTX_TEXT, c.CTX_INIT
    s.N_CTX_VISION = c.TEACHER_N_CTX_VISION
    s.PROMPT_DEPTH_VISION, s.PROMPT_DEPTH_TEXT = c.TEACHER_PROMPT_DEPTH_VISION, c.TEACHER_PROMPT_DEPTH_TEXT
    tcfg.freeze()
    return tcfg


def load_teacher_state(teacher: "PromptSRCMethod", path: Path, what: str = "TRAINER.PROMPTKD.TEACHER_CKPT") -> None:
    """Load a PromptSRC checkpoint (upstream's whole-model or our learnable-only state dict) into
    ``teacher``; the class-dependent buffers are dropped. Anything else is one clear error."""
    from dapt.engine.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: teacher checkpoint {path} does not exist; train a PromptSRC teacher "
                                f"(scripts/promptkd/) or set {what} to its model.pth.tar-N / model-best.pth.tar")
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{what}: {path} holds no 'state_dict'; expected a Dassl-style PromptSRC checkpoint")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items() if k not in CLASS_BUFFERS}
    state = {("text_prompts." + k[len("text_encoder."):] if k.startswith("text_encoder.") and "VPT_shallow" in k else k): v
             for k, v in state.items()}
    params = teacher.learnable_parameters()
    missing = [k for k in params if k not in state]
    if missing:
        raise ValueError(f"{what}: {path} is not a PromptSRC checkpoint for this teacher: it lacks {missing[0]} "
                         f"(and {len(missing) - 1} more); check TEACHER_NAME and TEACHER_* prompt keys")
    with torch.no_grad():
        for k, p in params.items():
            v = state[k]
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"{what}: tensor {k} in {path} has shape {tuple(v.shape)}, the teacher "
                                 f"({teacher.cfg.MODEL.BACKBONE.NAME}) expects {tuple(p.shape)}; check TEACHER_NAME "
                                 f"and the TEACHER_* prompt keys")
            p.copy_(v.to(p.dtype))
    logger.info("Loaded the PromptKD teacher from %s (epoch %s)", path, ckpt.get("epoch"))


def build_teacher(cfg, classnames, device=None) -> "PromptSRCMethod":
    """The frozen PromptSRC teacher of a PromptKD config, loaded from its checkpoint."""
    from dapt.methods.promptsrc import PromptSRCMethod
    from dapt.models.clip import build_clip_from_cfg, get_tokenizer

    tcfg = teacher_cfg(cfg)
    logger.info("Loading the PromptKD teacher CLIP (backbone: %s)", tcfg.MODEL.BACKBONE.NAME)
    teacher = PromptSRCMethod(tcfg, classnames, build_clip_from_cfg(tcfg), get_tokenizer(tcfg.MODEL.BACKBONE.NAME))
    load_teacher_state(teacher, teacher_checkpoint_path(cfg))
    return teacher.to(device) if device is not None else teacher


@TRAINER_REGISTRY.register()
class PromptKD(PromptTrainer):
    """Distil a PromptSRC teacher into a visual-prompt student (no labels)."""

    config_node = "PROMPTKD"
    checkpoint_name = "VLPromptLearner"

    def __init__(self, cfg, dm=None, teacher: "PromptSRCMethod" = None):
        self._given_teacher = teacher
        self._eval_split = None
        super().__init__(cfg, dm)

    # ------------------------------------------------------------ data
    def build_data_loader(self):
        from dapt.data.base import DatasetBase, subsample_classes
        from dapt.data.data_manager import DataManager
        from dapt.data.registry import build_dataset

        cfg = self.cfg
        if cfg.TRAINER.MODAL not in ("base2novel", "cross"):
            raise ValueError(f"TRAINER.MODAL must be base2novel or cross, got '{cfg.TRAINER.MODAL}'")
        if cfg.TRAINER.MODAL == "cross":
            return DataManager(cfg)
        if cfg.DATASET.SUBSAMPLE_CLASSES != "all":
            logger.warning("TRAINER.MODAL base2novel trains on all classes (as upstream); DATASET.SUBSAMPLE_CLASSES %s "
                           "only chooses the classes whose test images the test split scores",
                           cfg.DATASET.SUBSAMPLE_CLASSES)
        dcfg = cfg.clone()
        dcfg.defrost()
        dcfg.DATASET.SUBSAMPLE_CLASSES = "all"
        dcfg.freeze()
        ds = build_dataset(dcfg)
        _, test_base = subsample_classes(ds.train_x, ds.test, subsample="base")
        _, test_new = subsample_classes(ds.train_x, ds.test, subsample="new")
        base = cfg.DATASET.SUBSAMPLE_CLASSES == "base"
        test = test_base if base else test_new
        logger.info("PromptKD base2novel (transductive): training on the unlabeled training images of all %d classes "
                    "(%d images); val = base-class test images (%d), test = %s-class test images (%d)",
                    ds.num_classes, len(ds.train_x), len(test_base), "base" if base else "novel", len(test))
        split = DatasetBase(train_x=ds.train_x, val=test_base, test=test, classnames=ds.classnames)
        # the dataset's further test sets (the testbed's correlated one), restricted to the same classes
        split.extra_tests = {name: subsample_classes(ds.train_x, items, subsample="base" if base else "new")[1]
                             for name, items in (getattr(ds, "extra_tests", None) or {}).items()}
        return DataManager(cfg, dataset=split)

    # ------------------------------------------------------------ model
    method_class = PromptKDMethod

    def build_model(self) -> None:
        from dapt.models.clip import build_clip_from_cfg, get_tokenizer

        cfg = self.cfg
        if cfg.DAPT.ENABLED:
            raise ValueError("PromptKD's student is trained without DAPT: DAPT+PromptKD distils from a DAPT+PromptSRC "
                             "teacher (train the teacher with --mode, then distil without it)")
        classnames = self.dm.classnames
        teacher = self._given_teacher
        if teacher is None:
            teacher = build_teacher(cfg, classnames)
        elif list(teacher.classnames) != [c.replace("_", " ") for c in classnames]:
            raise ValueError("the given PromptKD teacher was built for other classes than the dataset's")
        logger.info("Loading CLIP (backbone: %s)", cfg.MODEL.BACKBONE.NAME)
        clip_model = build_clip_from_cfg(cfg)
        self.model = self.method_class(cfg, classnames, clip_model, get_tokenizer(cfg.MODEL.BACKBONE.NAME), teacher=teacher)
        n = sum(p.numel() for p in self.model.learnable_parameters().values())
        logger.info("Learnable parameters: %s (%d tensors)", f"{n:,}", len(self.model.learnable_parameters()))
        if cfg.MODEL.INIT_WEIGHTS:
            from dapt.engine.checkpoint import load_checkpoint

            self.load_model_state(load_checkpoint(cfg.MODEL.INIT_WEIGHTS)["state_dict"])

    def get_model_state(self) -> "OrderedDict[str, torch.Tensor]":
        state = super().get_model_state()
        bn = self.model.VPT_image_trans.conv1[1]
        for b in BN_BUFFERS:
            state[BN_PREFIX + b] = getattr(bn, b).detach().cpu().clone()
        return state

    def load_model_state(self, state: Dict[str, torch.Tensor]) -> None:
        state = dict(state)
        params = self.model.learnable_parameters()
        for k in ("VPT_image_trans.conv1.0.weight", "VPT_image_trans.conv1.3.weight"):
            v = state.get(k)
            if v is not None and v.dim() == 4 and k in params:  # upstream's 1x1 convolutions
                state[k] = v.flatten(1)
        missing = [BN_PREFIX + b for b in BN_BUFFERS if BN_PREFIX + b not in state]
        if missing:
            raise KeyError(f"checkpoint lacks the projector's BatchNorm statistics {missing}; was it written by PromptKD?")
        super().load_model_state({k: v for k, v in state.items() if not k.startswith(BN_PREFIX) or k in params})
        bn = self.model.VPT_image_trans.conv1[1]
        with torch.no_grad():
            for b in BN_BUFFERS:
                buf = getattr(bn, b)
                buf.copy_(state[BN_PREFIX + b].to(buf.dtype))

    # ------------------------------------------------------------ evaluation
    def test(self, split=None) -> float:
        self._eval_split = split or self.cfg.TEST.SPLIT
        try:
            return super().test(split)
        finally:
            self._eval_split = None

    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        """Student logits over the split's classes in base2novel: base (val, or test with
        DATASET.SUBSAMPLE_CLASSES base) or novel (test)."""
        logits = self.model(images)
        if self.cfg.TRAINER.MODAL == "base2novel":
            m = math.ceil(logits.shape[1] / 2)
            base = self._eval_split == "val" or self.cfg.DATASET.SUBSAMPLE_CLASSES == "base"
            return logits[:, :m] if base else logits[:, m:]
        return logits
