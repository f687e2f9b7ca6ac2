# Shared settings of the PromptKD scripts: DATA, SEEDS, OUT as in scripts/dapt/common.sh, and
#   TEACHER_CKPT=<file>   the PromptSRC teacher checkpoint (default: upstream's teacher_model/ layout)
MODE=none
TRAINER=PromptKD
source "$(dirname "${BASH_SOURCE[0]}")/../dapt/common.sh"
# upstream's distillation weights: 200 for fgvc_aircraft, oxford_flowers, dtd; 1000 otherwise
kd_weight() { case $1 in fgvc_aircraft|oxford_flowers|dtd) echo 200.0 ;; *) echo 1000.0 ;; esac; }
teacher_opt() { [ -z "${TEACHER_CKPT:-}" ] || echo "TRAINER.PROMPTKD.TEACHER_CKPT $TEACHER_CKPT"; }
finished() { [ -f "$1/log.txt" ] && grep -q "Finish training" "$1/log.txt"; }
