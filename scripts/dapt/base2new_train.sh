#!/bin/bash
# Base-to-novel generalisation (Table 1, setting III weights): train on the base classes, 16 shots, seeds 1-3.
#   bash scripts/dapt/base2new_train.sh oxford_pets [dapt-s|dapt-g]
source "$(dirname "$0")/common.sh"
DATASET=$1
MODE=${2:-$MODE}
CFG=${CFG:-dapt_vit_b16_base}
SHOTS=${SHOTS:-16}
for SEED in $SEEDS; do
  DIR=$OUT/base2new/train_base/$DATASET/shots_$SHOTS/$(tag)/$CFG/seed$SEED
  if [ -f "$DIR/log.txt" ] && grep -q "Finish training" "$DIR/log.txt"; then echo "done: $DIR"; continue; fi
  run --root "$DATA" --seed "$SEED" --trainer "$TRAINER" $(mode_flag) \
    --dataset-config-file "configs/datasets/$DATASET.yaml" \
    --config-file "configs/trainers/$TRAINER/$CFG.yaml" \
    --output-dir "$DIR" DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base
done
