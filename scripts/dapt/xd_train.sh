#!/bin/bash
# Cross-dataset / domain generalisation source model (Tables 2-3): ImageNet, 16 shots, all classes, seeds 1-3.
#   bash scripts/dapt/xd_train.sh [dapt-s|dapt-g]
source "$(dirname "$0")/common.sh"
MODE=${1:-$MODE}
CFG=${CFG:-dapt_vit_b16_cross_datasets}
for SEED in $SEEDS; do
  DIR=$OUT/xd/train/imagenet/$(tag)/$CFG/seed$SEED
  if [ -f "$DIR/log.txt" ] && grep -q "Finish training" "$DIR/log.txt"; then echo "done: $DIR"; continue; fi
  run --root "$DATA" --seed "$SEED" --trainer "$TRAINER" $(mode_flag) \
    --dataset-config-file configs/datasets/imagenet.yaml \
    --config-file "configs/trainers/$TRAINER/$CFG.yaml" \
    --output-dir "$DIR" DATASET.NUM_SHOTS 16
done
