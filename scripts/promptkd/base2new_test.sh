#!/bin/bash
# PromptKD base-to-novel: evaluate the distilled student on the base (TEST.SPLIT val) and the
# novel (test) classes; then: python tools/parse_results.py --base $OUT/base2new/test_base/... --new .../test_new/...
#   TEACHER_CKPT=... bash scripts/promptkd/base2new_test.sh oxford_pets
source "$(dirname "$0")/common.sh"
DATASET=$1
CFG=${CFG:-vit_b16_c2_ep20_batch8_4+4ctx}
TAG=${TAG:-PromptKD}
for SEED in $SEEDS; do
  COMMON=$DATASET/shots_0/$TAG/$CFG/seed_$SEED
  for SPLIT in base new; do
    if [ "$SPLIT" = base ]; then S=val; else S=test; fi
    run --root "$DATA" --seed "$SEED" --trainer PromptKD \
      --dataset-config-file "configs/datasets/$DATASET.yaml" \
      --config-file "configs/trainers/PromptKD/$CFG.yaml" \
      --output-dir "$OUT/base2new/test_$SPLIT/$COMMON" \
      --model-dir "$OUT/base2new/train_base/$COMMON" --eval-only \
      DATASET.NUM_SHOTS 0 TRAINER.MODAL base2novel TEST.SPLIT "$S" $(teacher_opt)
  done
done
