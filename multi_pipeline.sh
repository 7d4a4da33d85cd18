#!/usr/bin/env bash
# Train one run per seed, then summarise their final scores as mean ± std (the paper reports
# 5 runs). Variables (all optional), as for pipeline.sh:
#   cuda=ID[,ID...]  GPU id(s); with several (cuda=0,1,2) seeds run in parallel, one per GPU
#                    (unset or no GPU: CPU, one seed after the other)
#   config=NAME      a YAML file in configs/ (default: tetro_demo.yml)
#   tag=TAG          seed k trains into runs/<dataset>/<MMDD>_<TAG>_seed<k>/
#   seeds=N          seeds 0..N-1 (default 5), given to each run as training.seed
# Extra arguments are passed to every run's trainer (e.g. --set training.n_epoches=5).
# Logs go to runs/summaries/<MMDD>_<TAG>/seed<k>.log (a taken name gets a _1, _2 suffix);
# the summary to runs/summaries/<MMDD>_<TAG>/summary.{tsv,md}, and its table is printed.
# A failed seed does not stop the others; the script then exits with status 1.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh

config=${config:-tetro_demo.yml}
tag=${tag:-default}
seeds=${seeds:-5}
case "$seeds" in '' | *[!0-9]* | 0) echo "seeds=$seeds: expected a positive integer" >&2; exit 2 ;; esac
out="runs/summaries/$(date +%m%d)_${tag}"
base=$out n=1
while [ -e "$out" ]; do out="${base}_$n"; n=$((n + 1)); done  # never overwrite an earlier summary
mkdir -p "$out"
extra=("$@")

# Generate a synthetic dataset once here, not in parallel inside each run.
.venv/bin/python -m dti_sprites prepare-data --config "$config"

gpus=()
[ -n "${cuda:-}" ] && IFS=',' read -r -a gpus <<< "$cuda"
parallel=${#gpus[@]}
if [ "$parallel" -gt 1 ] && ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "cuda=$cuda given but no CUDA device is available: seeds run one after the other on the CPU" >&2
  gpus=() parallel=0
fi

run_seed() {  # run_seed SEED GPU_ID_OR_EMPTY: train one seed, record its run folder
  local k=$1 gpu=$2 log="$out/seed$1.log" status=0
  echo "seed $k${gpu:+ on GPU $gpu}: log $log" >&2
  if [ "$parallel" -gt 1 ]; then
    cuda=$gpu tag="${tag}_seed$k" ./pipeline.sh --set "training.seed=$k" --no-progress "${extra[@]}" \
      >"$out/seed$k.scores" 2>"$log" || status=$?
  else
    # Progress and log on the terminal and in the log file; pipefail keeps the trainer's status.
    cuda=$gpu tag="${tag}_seed$k" ./pipeline.sh --set "training.seed=$k" "${extra[@]}" \
      2>&1 >"$out/seed$k.scores" | tee "$log" >&2 || status=$?
  fi
  if [ "$status" -ne 0 ]; then
    echo "seed $k failed (exit $status); see $log" >&2
    echo "$k" >> "$out/failed_seeds"
  fi
}

rm -f "$out/failed_seeds"
if [ "$parallel" -gt 1 ]; then
  # One worker per GPU; worker i takes seeds i, i+n, i+2n, ...
  for i in "${!gpus[@]}"; do
    (
      for ((k = i; k < seeds; k += parallel)); do run_seed "$k" "${gpus[$i]}"; done
    ) &
  done
  wait
else
  for ((k = 0; k < seeds; k++)); do run_seed "$k" "${gpus[0]:-}"; done
fi

# Each run prints "run folder: <path>" when it starts (after progress bars: match mid-line).
runs=()
for ((k = 0; k < seeds; k++)); do
  folder=$(sed -n 's/.*run folder: //p' "$out/seed$k.log" 2>/dev/null | tail -n 1)
  [ -n "$folder" ] && runs+=("$folder")
done
if [ ${#runs[@]} -eq 0 ]; then
  echo "no run started; see the logs in $out" >&2
  exit 1
fi
.venv/bin/python -m dti_sprites summarize "${runs[@]}" --out "$out/summary" \
  --title "$config, tag $tag: final scores over ${#runs[@]} seed(s)"
[ ! -s "$out/failed_seeds" ]
