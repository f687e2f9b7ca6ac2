# Shared settings of the DAPT scripts. Override with environment variables:
#   DATA=/path/to/datasets  SEEDS="1 2 3"  MODE=dapt-s|dapt-g|none  TRAINER=MaPLe  OUT=output
DATA=${DATA:-/path/to/datasets}
SEEDS=${SEEDS:-"1 2 3"}
MODE=${MODE:-dapt-s}          # dapt-s: precomputed (SEEM) masks; dapt-g: per-epoch Grad-CAM masks
TRAINER=${TRAINER:-MaPLe}
OUT=${OUT:-output}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 1
run() { echo "+ $*"; python train.py "$@"; }
# MODE=none runs the method without DAPT (the baselines; see scripts/baselines/)
mode_flag() { [ "$MODE" = none ] || echo "--mode $MODE"; }
tag() { if [ "$MODE" = none ]; then echo "$TRAINER"; else echo "${TRAINER}_${MODE}"; fi; }
