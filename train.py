"""Train or evaluate a prompt-tuning method (Dassl / MaPLe command line).

    python train.py --root $DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b16_ep50.yaml \
        --output-dir output/oxford_pets/CoOp/seed1 DATASET.NUM_SHOTS 16
"""
import sys

from dapt.cli import main

if __name__ == "__main__":
    sys.exit(main())
