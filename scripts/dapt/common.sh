# Shared settings of the DAPT scripts. Override with environment variables:
#   DATA=/path/to/datasets  SEEDS="1 2 3"  MODE=dapt-s|dapt-g  TRAINER=MaPLe  OUT=output
DATA=${DATA:-/path/to/datasets}
SEEDS=${SEEDS:-"1 2 3"}
MODE=${MODE:-dapt-s}          # dapt-s: precomputed (SEEM) masks; dapt-g: per-epoch Grad-CAM masks
TRAINER=${TRAINER:-MaPLe}
OUT=${OUT:-output}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 1
run() { echo "+ $*"; python train.py "$@"; }
