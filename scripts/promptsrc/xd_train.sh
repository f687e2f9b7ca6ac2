#!/bin/bash
# PromptSRC cross-dataset / domain generalisation: train on ImageNet (all classes, 16 shots).
#   bash scripts/promptsrc/xd_train.sh [none|dapt-s|dapt-g]
source "$(dirname "$0")/common.sh"
MODE=${1:-$MODE}
CFG=${CFG:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}
SHOTS=${SHOTS:-16}
for SEED in $SEEDS; do
  DIR=$OUT/imagenet/$(tag)/${CFG}_${SHOTS}shots/seed$SEED
  if finished "$DIR"; then echo "done: $DIR"; continue; fi
  run --root "$DATA" --seed "$SEED" --trainer PromptSRC $(mode_flag) \
    --dataset-config-file configs/datasets/imagenet.yaml \
    --config-file "configs/trainers/PromptSRC/$CFG.yaml" \
    --output-dir "$DIR" DATASET.NUM_SHOTS "$SHOTS"
done
