#!/bin/bash
# Base-to-novel: evaluate the base-trained models on the novel classes (only the original image and class texts).
#   bash scripts/dapt/base2new_test.sh oxford_pets [dapt-s|dapt-g]
source "$(dirname "$0")/common.sh"
DATASET=$1
MODE=${2:-$MODE}
CFG=${CFG:-dapt_vit_b16_base}
SHOTS=${SHOTS:-16}
LOADEP=${LOADEP:-5}
for SEED in $SEEDS; do
  MODEL_DIR=$OUT/base2new/train_base/$DATASET/shots_$SHOTS/$(tag)/$CFG/seed$SEED
  DIR=$OUT/base2new/test_new/$DATASET/shots_$SHOTS/$(tag)/$CFG/seed$SEED
  run --root "$DATA" --seed "$SEED" --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/$DATASET.yaml" \
    --config-file "configs/trainers/$TRAINER/$CFG.yaml" \
    --output-dir "$DIR" --model-dir "$MODEL_DIR" --load-epoch "$LOADEP" --eval-only \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES new
done
