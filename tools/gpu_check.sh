#!/usr/bin/env bash
# Every GPU check in one call (issue 17: device time is short, machine start included): build fastprune for
# the GPU present, run the CUDA and Triton tests, compute-sanitizer (memcheck, racecheck) over a short CUDA
# subset, and the GPU benchmarks; one log plus the CSVs in one folder. Each step gets what is left of
# --budget (seconds); when it runs out the script stops cleanly, saying which steps did not run.
#
#   tools/gpu_check.sh [--budget SECONDS] [--out DIR] [--python PY] [--dry-run]
#   make gpu-check [BUDGET=420] [DRY_RUN=1]
#
# Needs an NVIDIA GPU with PyTorch (CUDA build), Triton and nvcc installed. --dry-run prints the plan and
# runs each step's CPU-safe stand-in (test collection, --help), so the script itself is tested without one.
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET=420
OUT=""
PY="${PYTHON:-python3}"
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) BUDGET="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) echo "gpu_check: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check: --budget: expected seconds, got '$BUDGET'" >&2; exit 2 ;; esac
OUT="${OUT:-gpu-check/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
START=$(date +%s)
SKIPPED=()
FAILED=()

log() { echo "$*" | tee -a "$LOG"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME COMMAND [CPU-STAND-IN]: runs COMMAND within the remaining budget (or, dry, prints it and runs the
# stand-in), logging its output and status.
step() {
  local name="$1" command="$2" stand_in="${3:-}"
  local remaining
  remaining=$(left)
  if [ "$remaining" -le 5 ]; then
    log "== $name: not run (budget of ${BUDGET}s spent)"
    SKIPPED+=("$name")
    return
  fi
  log "== $name ($(date -u +%H:%M:%S), ${remaining}s left)"
  log "\$ $command"
  if [ "$DRY_RUN" = 1 ]; then
    [ -n "$stand_in" ] || return 0
    log "  (dry run: $stand_in)"
    command="$stand_in"
  fi
  timeout --signal=INT --kill-after=10 "$remaining" bash -c "$command" >>"$LOG" 2>&1
  local status=$?
  if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    log "-- $name: stopped at the budget"
    SKIPPED+=("$name (cut)")
  elif [ $status -ne 0 ]; then
    log "-- $name: FAILED (status $status)"
    FAILED+=("$name")
  else
    log "-- $name: ok"
  fi
}

log "fastprune gpu-check: budget ${BUDGET}s, out $OUT, dry run $DRY_RUN, $(git rev-parse --short HEAD 2>/dev/null)"
step "devices" "nvidia-smi -L && $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'" \
  "$PY -c 'import torch; print(torch.__version__, \"cuda available:\", torch.cuda.is_available())'"
step "build" "$PY -m pip install -q --no-build-isolation --no-deps -e . && $PY -m fastprune info" \
  "$PY -m fastprune info"
CUDA_TESTS="$PY -m pytest -q -x tests -k 'cuda or triton' -p no:cacheprovider"
step "cuda and triton tests" "$CUDA_TESTS" "$CUDA_TESTS --collect-only -q | tail -1"
SANITIZED="tests/test_pairwise_distances.py tests/test_gm_scores.py tests/test_small_matrix_ops.py"
for tool in memcheck racecheck; do
  step "compute-sanitizer $tool" \
    "compute-sanitizer --tool $tool --error-exitcode 1 $PY -m pytest -q -x $SANITIZED -k cuda -p no:cacheprovider" \
    "$PY -m pytest -q $SANITIZED -k cuda --collect-only -p no:cacheprovider | tail -1"
done
step "bench scoring (cuda)" "$PY -m fastprune bench scoring --backend cuda --networks resnet56 resnet50 --no-scipy --out $OUT" \
  "$PY -m fastprune bench --help | head -3"
step "bench conv (cuda vs cuDNN)" "$PY -m fastprune bench conv --backend cuda --out $OUT" \
  "$PY -m fastprune bench --help | head -3"
step "bench spectral" "$PY -m fastprune bench spectral --out $OUT" "$PY -m fastprune bench --help | head -3"
step "bench compact" "$PY -m fastprune bench compact --networks resnet56 --out $OUT" \
  "$PY -m fastprune bench --help | head -3"

log "== done in $(( $(date +%s) - START ))s; failed: ${FAILED[*]:-none}; not run: ${SKIPPED[*]:-none}; log $LOG"
[ ${#FAILED[@]} -eq 0 ]
