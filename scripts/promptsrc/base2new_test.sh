#!/bin/bash
# PromptSRC base-to-novel: evaluate the GPA prompts (last epoch) on the novel classes.
#   bash scripts/promptsrc/base2new_test.sh oxford_pets [none|dapt-s|dapt-g]
source "$(dirname "$0")/common.sh"
DATASET=$1
MODE=${2:-$MODE}
CFG=${CFG:-$(default_cfg vit_b16_c2_ep20_batch4_4+4ctx)}
SHOTS=${SHOTS:-16}
LOADEP=${LOADEP:-20}
SUB=${SUB:-new}
for SEED in $SEEDS; do
  COMMON=$DATASET/shots_$SHOTS/$(tag)/$CFG/seed$SEED
  run --root "$DATA" --seed "$SEED" --trainer PromptSRC \
    --dataset-config-file "configs/datasets/$DATASET.yaml" \
    --config-file "configs/trainers/PromptSRC/$CFG.yaml" \
    --output-dir "$OUT/base2new/test_$SUB/$COMMON" \
    --model-dir "$OUT/base2new/train_base/$COMMON" --load-epoch "$LOADEP" --eval-only \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$SUB"
done
