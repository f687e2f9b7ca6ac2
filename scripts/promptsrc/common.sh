# Shared settings of the PromptSRC / PromptKD scripts (on top of scripts/dapt/common.sh):
#   DATA=/path/to/datasets  SEEDS="1 2 3"  OUT=output  MODE=none|dapt-s|dapt-g  CFG=<config name>
MODE=${MODE:-none}            # none: plain PromptSRC; dapt-s / dapt-g: DAPT+PromptSRC
TRAINER=PromptSRC
source "$(dirname "${BASH_SOURCE[0]}")/../dapt/common.sh"
# DAPT runs default to the DAPT config (setting-III weights)
default_cfg() { if [ "$MODE" = none ]; then echo "$1"; else echo "dapt_$1"; fi; }
finished() { [ -f "$1/log.txt" ] && grep -q "Finish training" "$1/log.txt"; }
