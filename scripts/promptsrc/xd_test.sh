#!/bin/bash
# PromptSRC cross-dataset: evaluate the ImageNet prompts on another dataset (or ImageNet variant).
#   bash scripts/promptsrc/xd_test.sh caltech101 [none|dapt-s|dapt-g]
source "$(dirname "$0")/common.sh"
DATASET=$1
MODE=${2:-$MODE}
CFG=${CFG:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}
SHOTS=${SHOTS:-16}
LOADEP=${LOADEP:-20}
for SEED in $SEEDS; do
  run --root "$DATA" --seed "$SEED" --trainer PromptSRC \
    --dataset-config-file "configs/datasets/$DATASET.yaml" \
    --config-file "configs/trainers/PromptSRC/$CFG.yaml" \
    --output-dir "$OUT/evaluation/$(tag)/${CFG}_${SHOTS}shots/$DATASET/seed$SEED" \
    --model-dir "$OUT/imagenet/$(tag)/${CFG}_${SHOTS}shots/seed$SEED" --load-epoch "$LOADEP" --eval-only
done
