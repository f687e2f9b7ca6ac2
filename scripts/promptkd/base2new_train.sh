#!/bin/bash
# PromptKD base-to-novel (transductive: the unlabeled training images of ALL classes), seeds $SEEDS.
# The final test line is the novel-class accuracy; scripts/promptkd/base2new_test.sh adds the base one.
#   TEACHER_CKPT=teacher_model/OxfordPets/VLPromptLearner/model-best.pth.tar \
#   bash scripts/promptkd/base2new_train.sh oxford_pets
source "$(dirname "$0")/common.sh"
DATASET=$1
CFG=${CFG:-vit_b16_c2_ep20_batch8_4+4ctx}
TAG=${TAG:-PromptKD}
for SEED in $SEEDS; do
  DIR=$OUT/base2new/train_base/$DATASET/shots_0/$TAG/$CFG/seed_$SEED
  if finished "$DIR"; then echo "done: $DIR"; continue; fi
  run --root "$DATA" --seed "$SEED" --trainer PromptKD \
    --dataset-config-file "configs/datasets/$DATASET.yaml" \
    --config-file "configs/trainers/PromptKD/$CFG.yaml" \
    --output-dir "$DIR" DATASET.NUM_SHOTS 0 TRAINER.MODAL base2novel \
    TRAINER.PROMPTKD.TEMPERATURE 1.0 TRAINER.PROMPTKD.KD_WEIGHT "$(kd_weight "$DATASET")" $(teacher_opt)
done
