"""Background vocabularies for L_b.

``paper25`` is the paper's list (section 5.1, after CLIP-ES), in the paper's order, which
matters for the first-k ablation (Table 10). ``official32`` is what the official release builds:
the 25 plus seven food-scene words.
"""
from __future__ import annotations

import os
from typing import List

PAPER25 = [
    "ground", "land", "grass", "tree", "building", "wall", "sky", "lake", "water", "river", "sea",
    "railway", "railroad", "keyboard", "helmet", "cloud", "house", "mountain", "ocean", "road", "rock",
    "street", "valley", "bridge", "sign",
]
OFFICIAL_FOOD7 = ["table", "forks", "tablecloth", "hands", "spoon", "glasses", "dishes"]
VOCABULARIES = {"paper25": PAPER25, "official32": PAPER25 + OFFICIAL_FOOD7}


def load_background_classes(spec: str) -> List[str]:
    """A named vocabulary, a text file (one class a line, '#' comments), or a comma-separated list."""
    if spec in VOCABULARIES:
        return list(VOCABULARIES[spec])
    if os.path.isfile(spec):
        with open(spec) as f:
            names = [ln.strip() for ln in f if ln.strip() and not ln.strip().startswith("#")]
        if not names:
            raise ValueError(f"DAPT.BG.CLASSES: file {spec} lists no class; write one class a line")
        return names
    if "," in spec:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        if names:
            return names
    raise ValueError(f"DAPT.BG.CLASSES '{spec}' is neither {' / '.join(VOCABULARIES)}, an existing file, "
                     "nor a comma-separated list")


def split_background(cfg_bg) -> "tuple[List[str], List[str]]":
    """(classes appended to the foreground logits, classes of L_b) from the DAPT.BG node."""
    names = load_background_classes(cfg_bg.CLASSES)
    extra = int(cfg_bg.FG_EXTRA)
    if extra < 0 or extra >= len(names):
        raise ValueError(f"DAPT.BG.FG_EXTRA {extra} must be in [0, {len(names) - 1}] for {len(names)} background classes")
    fg_extra, lb = names[:extra], names[extra:]
    if cfg_bg.NUM:
        if not 0 < cfg_bg.NUM <= len(lb):
            raise ValueError(f"DAPT.BG.NUM {cfg_bg.NUM} must be in [1, {len(lb)}] (0 = all)")
        lb = lb[:cfg_bg.NUM]
    return fg_extra, lb
