"""Write image | mask | I_f | I_b PNG sheets of DAPT training batches (same as ``dapt-generate-masks visualize``).

    dapt-visualize-masks --root $DATA --trainer MaPLe --dataset-config-file ... \
        --config-file configs/trainers/MaPLe/dapt_vit_b16_t.yaml --out overlays DAPT.MASK.STORE gt
"""
import sys
from typing import List, Optional

from dapt.tools.generate_masks import main as generate_masks_main


def main(argv: Optional[List[str]] = None) -> int:
    return generate_masks_main(["visualize"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
