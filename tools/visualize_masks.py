"""Write image | mask | I_f | I_b PNG sheets of DAPT training batches (same as ``generate_masks.py visualize``).

    python tools/visualize_masks.py --root $DATA --trainer MaPLe --dataset-config-file ... \
        --config-file configs/trainers/MaPLe/dapt_vit_b16_t.yaml --out overlays DAPT.MASK.STORE gt
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_masks import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["visualize"] + sys.argv[1:]))
