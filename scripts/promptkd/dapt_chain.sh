#!/bin/bash
# DAPT+PromptKD, the whole chain, base-to-novel, seeds $SEEDS:
#   1. the teacher: DAPT+PromptSRC on ViT-L/14 (base classes, 16 shots, setting-III weights);
#   2. distillation into the PromptKD ViT-B/16 student (unchanged), from that teacher's checkpoint;
#   3. base and novel accuracy of the student.
#   bash scripts/promptkd/dapt_chain.sh oxford_pets [dapt-s|dapt-g]
DATASET=$1
DMODE=${2:-dapt-s}
HERE=$(dirname "$0")
TCFG=${TCFG:-dapt_vit_l14_c2_ep20_batch8_4+4ctx}
TEPOCH=${TEPOCH:-20}
source "$HERE/common.sh"
for SEED in $SEEDS; do
  TDIR=$OUT/base2new/train_base/$DATASET/shots_16/PromptSRC_$DMODE/$TCFG/seed$SEED
  SEEDS=$SEED MODE=$DMODE CFG=$TCFG bash "$HERE/../promptsrc/base2new_train.sh" "$DATASET" "$DMODE" || exit 1
  export TEACHER_CKPT=$TDIR/VLPromptLearner/model.pth.tar-$TEPOCH
  SEEDS=$SEED TAG=PromptKD_$DMODE bash "$HERE/base2new_train.sh" "$DATASET" || exit 1
  SEEDS=$SEED TAG=PromptKD_$DMODE bash "$HERE/base2new_test.sh" "$DATASET" || exit 1
done
