"""The DAPT config node (``cfg.DAPT``): paper defaults, with every official-code behaviour as a switch.

``configs/trainers/DAPT/official.yaml`` sets the official values in one place.
"""
from __future__ import annotations

from dapt.config import CN, register_config

PAPER_BACKGROUND = "paper25"


@register_config
def add_dapt_config(cfg):
    cfg.DAPT = CN()
    cfg.DAPT.ENABLED = False  # train with DAPT's visual triplet and its losses (inference is unchanged)

    cfg.DAPT.MASK = CN()
    cfg.DAPT.MASK.SOURCE = "precomputed"  # precomputed (DAPT-S: masks from the store) | gradcam (DAPT-G: per-epoch Grad-CAM)
    cfg.DAPT.MASK.STORE = "seem"  # folder under <dataset_dir>/masks/ holding the precomputed masks (seem, gt, clipes, ...)
    cfg.DAPT.MASK.LAYOUT = "store"  # store: masks/<STORE>/<relpath>.png | official: the release's <dataset_dir>/mask/... layout
    cfg.DAPT.MASK.DECODE = "label_map"  # label_map: 0 bg, 255 void, else fg | binary_0_255: 0 bg, 255 fg | official_rgb (R; 255 bg)
    cfg.DAPT.MASK.MISSING = "error"  # a training image without a mask: error | empty (all background) | full (all foreground)
    cfg.DAPT.MASK.INTERP = "nearest"  # mask resize in the paired transform: nearest | bicubic (official, re-binarised)
    cfg.DAPT.MASK.DEGRADE = "none"  # precomputed masks as read: none | dilate | erode (by DEGRADE_PX; a segmenter stand-in)
    cfg.DAPT.MASK.DEGRADE_PX = 2  # dilate/erode radius in pixels of the mask file (a (2r+1) square)
    cfg.DAPT.MASK.QUALITY_STORE = "auto"  # GT the training masks are scored on: auto (masks/gt if it has a manifest) | "" off | store

    cfg.DAPT.FILL = CN()
    cfg.DAPT.FILL.MODE = "normalized_zero"  # normalized_zero (mean colour) | pixel_black | blur_reverse | blur_soft (Table 9)
    cfg.DAPT.FILL.BLUR_KERNEL = (5, 9)  # Gaussian-blur kernel size for the blur modes (FGVP)
    cfg.DAPT.FILL.BLUR_SIGMA = (0.1, 1.0)  # Gaussian-blur sigma range, drawn per call

    cfg.DAPT.ERASE = CN()
    cfg.DAPT.ERASE.RATE = 0.0  # grid erasing of the foreground: probability a cell is zeroed (Table 7: .1 .3 .5 .7)
    cfg.DAPT.ERASE.CELLS = (16, 32)  # cell sizes in pixels, one drawn per image; redrawn every epoch
    cfg.DAPT.ERASE.BACKGROUND = "original"  # background of the triplet: original (1-M) | erased (1-M')

    cfg.DAPT.CAM = CN()
    cfg.DAPT.CAM.LAYER = "last_block_input"  # last_block_input = ln1_last: ln_1 output of the last block (its output has zero grad)
    cfg.DAPT.CAM.WEIGHTING = "elementwise"  # elementwise (Eq. 3: channel mean of grad*act) | spatial_mean (official Grad-CAM)
    cfg.DAPT.CAM.NORM = "per_image_minmax"  # per_image_minmax | batch_max (official: divide by the max of the CAM batch)
    cfg.DAPT.CAM.THRESHOLD = 0.5  # beta: foreground where the normalised CAM passes it
    cfg.DAPT.CAM.THRESHOLD_OP = "gt"  # gt (paper: g > beta) | ge (official: g >= beta)
    cfg.DAPT.CAM.ALIGN_CORNERS = False  # bilinear upsampling corners (official True)
    cfg.DAPT.CAM.VIEW = "full"  # full: whole image resized (deterministic) | random_crop (official: unpaired train view)
    cfg.DAPT.CAM.PRECISION = "fp32"  # fp32 | fp16 | bf16 (autocast on CUDA only)
    cfg.DAPT.CAM.BATCH_SIZE = 50  # images per Grad-CAM batch (official SELECTION_BATCH_SIZE)

    cfg.DAPT.LOSS = CN()
    cfg.DAPT.LOSS.SCHEDULE = "joint"  # joint: every term every step | epoch_switch (official: L_v until SWITCH_EPOCH, then L_f + L_b)
    cfg.DAPT.LOSS.SWITCH_EPOCH = 6  # epoch_switch: L_f + L_b when the 0-based epoch is > this, else L_v
    cfg.DAPT.LOSS.W_CLS = 1.0  # gamma_cls
    cfg.DAPT.LOSS.W_V = 0.6  # gamma_v (settings I/II 0.6, III 0.4, official 0.8)
    cfg.DAPT.LOSS.W_F = 0.4  # gamma_f (settings I/II/III 0.4, official 0.1)
    cfg.DAPT.LOSS.W_B = 0.1  # gamma_b (settings I/II 0.1, III 0.5, official 0.5)
    cfg.DAPT.LOSS.USE_V = True  # ablation: L_v on/off (turned off automatically when the image side has no learnable parameters)
    cfg.DAPT.LOSS.USE_F = True  # ablation: L_f on/off
    cfg.DAPT.LOSS.USE_B = True  # ablation: L_b on/off
    cfg.DAPT.LOSS.F_DETACH_IMAGE = False  # L_f on detached foreground image features (official True)

    cfg.DAPT.TRIPLET = CN()
    cfg.DAPT.TRIPLET.P = 1  # norm of the triplet distance (paper L1; official 2)
    cfg.DAPT.TRIPLET.MARGIN = 5.0  # alpha (paper 5.0; official 1.5)
    cfg.DAPT.TRIPLET.EPS = 0.0  # added to the feature difference before the norm (official 1e-6, torch's default)
    cfg.DAPT.TRIPLET.DETACH_POS_NEG = False  # stop-gradient on the positive and negative features (official True)
    cfg.DAPT.TRIPLET.TERMS = "both"  # both | pos (pull ||Z_I - Z_f|| only) | neg (push hinge on ||Z_I - Z_b|| only) (Table 6)
    cfg.DAPT.TRIPLET.REDUCTION = "mean"  # mean | sum over the batch
    # normalized: mask the normalised tensor (masked pixels take the mean colour) | pixel: mask raw pixels, then
    # normalise (masked pixels are black: the same as FILL.MODE pixel_black; blur modes are equal in both spaces)
    cfg.DAPT.TRIPLET.IMAGE_SPACE = "normalized"

    cfg.DAPT.BG = CN()
    cfg.DAPT.BG.CLASSES = PAPER_BACKGROUND  # paper25 | official32 (+7 food classes) | path to a text file, one class a line | comma list
    cfg.DAPT.BG.NUM = 0  # use only the first NUM classes of the L_b vocabulary (Table 10); 0 = all
    cfg.DAPT.BG.TEMPLATE = "a clean origami {}."  # background sentence template
    # frozen_tokens (official: frozen first-layer tokens + deep prompts) | shared_context (learned ctx + name) | auto
    cfg.DAPT.BG.CTX = "auto"
    # frozen_clip (Eq. 5: un-prompted CLIP on I_b) | prompted (official: the current prompted features)
    cfg.DAPT.BG.PSEUDO_LABEL = "frozen_clip"
    cfg.DAPT.BG.FG_EXTRA = 0  # official 7: the vocabulary's first N classes (ground..sky) join the foreground logits; L_b uses the rest
    cfg.DAPT.BG.EVAL_EXTRA = 0  # official 7: extra background columns appended to the test logits
