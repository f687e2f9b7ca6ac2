#!/bin/bash
# PromptSRC base-to-novel: train on the base classes, 16 shots, 20 epochs, seeds $SEEDS.
#   bash scripts/promptsrc/base2new_train.sh oxford_pets [none|dapt-s|dapt-g]
source "$(dirname "$0")/common.sh"
DATASET=$1
MODE=${2:-$MODE}
CFG=${CFG:-$(default_cfg vit_b16_c2_ep20_batch4_4+4ctx)}
SHOTS=${SHOTS:-16}
for SEED in $SEEDS; do
  DIR=$OUT/base2new/train_base/$DATASET/shots_$SHOTS/$(tag)/$CFG/seed$SEED
  if finished "$DIR"; then echo "done: $DIR"; continue; fi
  run --root "$DATA" --seed "$SEED" --trainer PromptSRC $(mode_flag) \
    --dataset-config-file "configs/datasets/$DATASET.yaml" \
    --config-file "configs/trainers/PromptSRC/$CFG.yaml" \
    --output-dir "$DIR" DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base
done
