#!/bin/bash
# The baseline without DAPT, same protocol as scripts/dapt/base2new_train.sh (seeds 1-3).
#   TRAINER=MaPLe CFG=vit_b16_c2_ep5_batch4_2ctx bash scripts/baselines/base2new_train.sh ARGS...
# TRAINER/CFG pairs: MaPLe vit_b16_c2_ep5_batch4_2ctx (xd: ..._cross_datasets), CoOp vit_b16_ep50,
# CoCoOp vit_b16_c4_ep10_batch1_ctxv1, VPT vit_b16_c2_ep5_batch4_4, IVLP vit_b16_c2_ep5_batch4_2+2ctx
export MODE=none
export TRAINER=${TRAINER:-MaPLe}
export CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx}
exec bash "$(dirname "$0")/../dapt/base2new_train.sh" "${1:-}" none
