#!/bin/bash
# PromptKD base-to-novel: evaluate the distilled student on the base and the novel classes' test
# images (DATASET.SUBSAMPLE_CLASSES base / new; the student trained on all classes either way); then:
#   python tools/parse_results.py --base $OUT/base2new/test_base/... --new $OUT/base2new/test_new/...
#   TEACHER_CKPT=... bash scripts/promptkd/base2new_test.sh oxford_pets
source "$(dirname "$0")/common.sh"
DATASET=$1
CFG=${CFG:-vit_b16_c2_ep20_batch8_4+4ctx}
TAG=${TAG:-PromptKD}
for SEED in $SEEDS; do
  COMMON=$DATASET/shots_0/$TAG/$CFG/seed_$SEED
  for SPLIT in base new; do
    run --root "$DATA" --seed "$SEED" --trainer PromptKD \
      --dataset-config-file "configs/datasets/$DATASET.yaml" \
      --config-file "configs/trainers/PromptKD/$CFG.yaml" \
      --output-dir "$OUT/base2new/test_$SPLIT/$COMMON" \
      --model-dir "$OUT/base2new/train_base/$COMMON" --eval-only \
      DATASET.NUM_SHOTS 0 TRAINER.MODAL base2novel DATASET.SUBSAMPLE_CLASSES "$SPLIT" $(teacher_opt)
  done
done
