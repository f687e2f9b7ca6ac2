#!/bin/bash
# PromptKD cross-dataset: distil the ImageNet teacher on a target dataset's unlabeled images.
#   TEACHER_CKPT=teacher_model/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20 \
#   bash scripts/promptkd/xd_train.sh caltech101
source "$(dirname "$0")/common.sh"
DATASET=$1
CFG=${CFG:-vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets}
for SEED in $SEEDS; do
  DIR=$OUT/$DATASET/PromptKD/${CFG}_0shots/seed$SEED
  if finished "$DIR"; then echo "done: $DIR"; continue; fi
  run --root "$DATA" --seed "$SEED" --trainer PromptKD \
    --dataset-config-file "configs/datasets/$DATASET.yaml" \
    --config-file "configs/trainers/PromptKD/$CFG.yaml" \
    --output-dir "$DIR" DATASET.NUM_SHOTS 0 DATASET.SUBSAMPLE_CLASSES all TRAINER.MODAL cross \
    TRAINER.PROMPTKD.TEMPERATURE 1.0 TRAINER.PROMPTKD.KD_WEIGHT 1000.0 $(teacher_opt)
done
