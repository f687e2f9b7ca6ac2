#!/bin/bash
# Cross-dataset / domain generalisation: evaluate the ImageNet model zero-shot on a target dataset.
#   bash scripts/dapt/xd_test.sh caltech101 [dapt-s|dapt-g]     (or imagenetv2, imagenet_sketch, imagenet_a, imagenet_r)
source "$(dirname "$0")/common.sh"
DATASET=$1
MODE=${2:-$MODE}
CFG=${CFG:-dapt_vit_b16_cross_datasets}
LOADEP=${LOADEP:-2}
for SEED in $SEEDS; do
  MODEL_DIR=$OUT/xd/train/imagenet/$(tag)/$CFG/seed$SEED
  DIR=$OUT/xd/test/$DATASET/$(tag)/$CFG/seed$SEED
  run --root "$DATA" --seed "$SEED" --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/$DATASET.yaml" \
    --config-file "configs/trainers/$TRAINER/$CFG.yaml" \
    --output-dir "$DIR" --model-dir "$MODEL_DIR" --load-epoch "$LOADEP" --eval-only
done
