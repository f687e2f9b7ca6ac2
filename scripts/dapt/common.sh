# Shared settings of the DAPT scripts. Override with environment variables:
#   DATA=/path/to/datasets  SEEDS="1 2 3"  MODE=dapt-s|dapt-g|none  TRAINER=MaPLe  OUT=output
#   PYTHON=python (the interpreter of the venv that has dapt installed)
SEEDS=${SEEDS:-"1 2 3"}
MODE=${MODE:-dapt-s}          # dapt-s: precomputed (SEEM) masks; dapt-g: per-epoch Grad-CAM masks
TRAINER=${TRAINER:-MaPLe}
OUT=${OUT:-output}
PYTHON=${PYTHON:-python}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 1

die() { echo "error: $*" >&2; exit 1; }
names() { (cd "$1" && ls -1 | sed -n "s/\.$2\$//p" | paste -sd ' '); }

# Checked before any run starts, so a typo does not launch a row of doomed runs.
[ -n "${DATA:-}" ] || die "DATA is not set: export DATA=/path/to/datasets (the folder holding oxford_pets/, dtd/, ...)"
[ -d "$DATA" ] || die "DATA=$DATA is not a folder: export DATA=/path/to/datasets"
[ -d "configs/trainers/$TRAINER" ] || die "TRAINER=$TRAINER has no configs/trainers/$TRAINER/ (valid: $(ls -1 configs/trainers | paste -sd ' '))"
"$PYTHON" -c "import dapt.cli" 2>/dev/null || die "'$PYTHON' cannot import dapt: activate the venv (source .venv/bin/activate) or set PYTHON=/path/to/venv/bin/python"

# run ARGS...: one train.py run; stops the script at the first failure, naming the run's log.
run() {
  local dir="" cfg="" dcfg="" prev=""
  for a in "$@"; do
    case "$prev" in
      --output-dir) dir=$a ;; --config-file) cfg=$a ;; --dataset-config-file) dcfg=$a ;;
    esac
    prev=$a
  done
  [ -z "$dcfg" ] || [ -f "$dcfg" ] || die "unknown dataset '$(basename "$dcfg" .yaml)' (valid: $(names configs/datasets yaml))"
  [ -z "$cfg" ] || [ -f "$cfg" ] || die "no config $cfg (valid for $TRAINER: $(names "$(dirname "$cfg")" yaml))"
  echo "+ $PYTHON train.py $*"
  case "$dir" in /*|"") ;; *) dir=$REPO/$dir ;; esac
  "$PYTHON" train.py "$@" || die "run failed (exit $?): see ${dir:-the output folder}/log.txt"
}
# MODE=none runs the method without DAPT (the baselines; see scripts/baselines/)
mode_flag() { [ "$MODE" = none ] || echo "--mode $MODE"; }
tag() { if [ "$MODE" = none ]; then echo "$TRAINER"; else echo "${TRAINER}_${MODE}"; fi; }
