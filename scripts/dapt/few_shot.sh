#!/bin/bash
# Few-shot classification (Fig. 5, setting I weights): every shot count, seeds 1-3.
#   bash scripts/dapt/few_shot.sh oxford_pets [dapt-s|dapt-g]
# SHOTS="1 2 4 8 16" by default; CFG=dapt_official_vit_b16_t reproduces the official release.
source "$(dirname "$0")/common.sh"
DATASET=$1
MODE=${2:-$MODE}
CFG=${CFG:-dapt_vit_b16_t}
SHOTS=${SHOTS:-"1 2 4 8 16"}
for SHOT in $SHOTS; do
  for SEED in $SEEDS; do
    DIR=$OUT/few_shot/$DATASET/$(tag)/$CFG/${SHOT}shots/seed$SEED
    if [ -f "$DIR/log.txt" ] && grep -q "Finish training" "$DIR/log.txt"; then echo "done: $DIR"; continue; fi
    run --root "$DATA" --seed "$SEED" --trainer "$TRAINER" $(mode_flag) \
      --dataset-config-file "configs/datasets/$DATASET.yaml" \
      --config-file "configs/trainers/$TRAINER/$CFG.yaml" \
      --output-dir "$DIR" DATASET.NUM_SHOTS "$SHOT"
  done
done
