#!/bin/bash
# PromptSRC few-shot: all classes, 50 epochs, SHOTS="1 2 4 8 16", seeds $SEEDS. Upstream's GPA for
# stanford_cars, oxford_flowers, fgvc_aircraft, dtd, eurosat is GPA_MEAN 45, GPA_STD 5 (set here).
#   bash scripts/promptsrc/few_shot.sh oxford_pets [none|dapt-s|dapt-g]
source "$(dirname "$0")/common.sh"
DATASET=$1
MODE=${2:-$MODE}
CFG=${CFG:-vit_b16_c2_ep50_batch4_4+4ctx_few_shot}
case $DATASET in
  stanford_cars|oxford_flowers|fgvc_aircraft|dtd|eurosat) GPA="TRAINER.PROMPTSRC.GPA_MEAN 45 TRAINER.PROMPTSRC.GPA_STD 5" ;;
  *) GPA="" ;;
esac
for SHOT in ${SHOTS:-1 2 4 8 16}; do
  for SEED in $SEEDS; do
    DIR=$OUT/$DATASET/$(tag)/${CFG}_${SHOT}shots/seed$SEED
    if finished "$DIR"; then echo "done: $DIR"; continue; fi
    run --root "$DATA" --seed "$SEED" --trainer PromptSRC $(mode_flag) \
      --dataset-config-file "configs/datasets/$DATASET.yaml" \
      --config-file "configs/trainers/PromptSRC/$CFG.yaml" \
      --output-dir "$DIR" $GPA DATASET.NUM_SHOTS "$SHOT"
  done
done
