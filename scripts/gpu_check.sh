#!/usr/bin/env bash
# The GPU figures of the speed issue, prepared to fit a short lease: two parts, one call each.
#
#   bash scripts/gpu_check.sh bench      # about 4 min: step time, memory, kernels of tetro, dsprites, clevr6
#   bash scripts/gpu_check.sh quality    # about 8 min: tetro.yml trained on a wall-clock budget
#   bash scripts/gpu_check.sh all        # both in one call, for a lease too short for two starts
#
# `bench` also generates the 60k training images in the background; `quality` reuses them
# when it runs on the same machine (call it right after), else generates them (~1.5 min).
#
# It uses the machine's own python3 and torch and runs the package from src/ (nothing to
# install: kornia, visdom and gdown are not imported on these paths). Results land in $OUT
# (default gpu_check_out/): bench.jsonl (one JSON object per benchmark), bench.log, and for
# `quality` the run's val_metrics.tsv (ARI-FG against seconds), train.log and final_scores.json.
# Extra arguments go to every command of the part, e.g. `quality --set training.compile=true`.
#
# Check the script itself on a CPU in a minute:
#   DEVICE=cpu STEPS=2 CONFIGS=tetro VARIANTS=plain BUDGET=15 N_IMAGES=300 bash scripts/gpu_check.sh all
set -uo pipefail
cd "$(dirname "$0")/.."
part=${1:-bench}
shift || true
OUT=${OUT:-gpu_check_out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-50}
CONFIGS=${CONFIGS:-"tetro dsprites clevr6"}
VARIANTS=${VARIANTS:-"plain learned amp compile"}   # learned: plain with model.selection=learned
BUDGET=${BUDGET:-420}            # training seconds; data generation and loading come on top
N_IMAGES=${N_IMAGES:-60000}      # tetro.yml's dataset size
EARLY=${EARLY:-1}                # 0: skip the early-phase tetro bench
WORK=${WORK:-/tmp/dti_gpu_check}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"

bench() {  # CONFIG PHASE [--set ...]: append one JSON line, never stop the part on a failure
    local config=$1 phase=$2
    shift 2
    echo "== bench $config $phase $*" >>"$OUT/bench.log"
    if ! "$PY" -m dti_sprites bench --config "$config.yml" --device "$DEVICE" --phase "$phase" --steps "$STEPS" \
            "$@" >"$WORK/last.json" 2>>"$OUT/bench.log"; then
        echo "{\"config\": \"$config\", \"phase\": \"$phase\", \"args\": \"$*\", \"failed\": true}" >>"$OUT/bench.jsonl"
        return
    fi
    tail -n 1 "$WORK/last.json" >>"$OUT/bench.jsonl"
}

make_data() {  # tetro.yml's images, once per machine (make-data publishes the folder only when complete)
    [ -d "$WORK/data/tetrominoes" ] && return 0
    "$PY" -m dti_sprites make-data tetrominoes --out "$WORK/data/tetrominoes" --n "$N_IMAGES" --seed 0 --no-progress
}

run_bench() {
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >>"$OUT/bench.log" 2>&1
    # The quality part's data, made on a spare core meanwhile: a call soon after finds it.
    make_data >>"$OUT/bench.log" 2>&1 &
    local data_pid=$!
    for variant in $VARIANTS; do
        for config in $CONFIGS; do
            case $variant in
                plain) bench "$config" late "$@" ;;
                learned) bench "$config" late --set model.selection=learned "$@" ;;
                compile) bench "$config" late --set training.compile=reduce-overhead "$@" ;;
                amp) bench "$config" late --set training.amp=true "$@" ;;
            esac
        done
    done
    [ "$EARLY" = 1 ] && bench tetro early "$@"
    wait "$data_pid"
    cat "$OUT/bench.jsonl"
}

run_quality() {
    local data="$WORK/data"
    make_data || return 1
    rm -rf "$WORK/runs"
    "$PY" -m dti_sprites train --config tetro.yml --device "$DEVICE" --time-budget "$BUDGET" --no-progress \
        --runs-root "$WORK/runs" --tag gpu_check --set "dataset.data_root=$data" "$@" 2>&1 | tail -n 40
    local run
    run=$(ls -d "$WORK"/runs/*/*/ | head -n 1)
    for name in val_metrics.tsv train.log final_scores.json; do
        [ -f "$run/$name" ] && cp "$run/$name" "$OUT/"
    done
    if [ -f "$run/val_metrics.tsv" ]; then
        echo "== validation scores against seconds"
        cut -f 1,3,5- "$run/val_metrics.tsv"
    else
        echo "== no validation ran within the budget (training.val_stat_interval)"
    fi
}

case $part in
    bench) run_bench "$@" ;;
    quality) run_quality "$@" ;;
    all) run_bench "$@" && run_quality "$@" ;;
    *) echo "usage: $0 bench|quality|all [--set SECTION.KEY=VALUE ...]" >&2; exit 2 ;;
esac
