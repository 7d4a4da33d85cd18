#!/usr/bin/env bash
# Train one run per seed, then summarise their final scores as mean ± std (the paper reports
# 5 runs). Variables (all optional), as for pipeline.sh:
#   cuda=ID[,ID...]  GPU id(s); with several (cuda=0,1,2) seeds run in parallel, one per GPU
#                    (unset or no GPU: CPU)
#   jobs=N           on the CPU, seeds trained at once, each with nproc/N threads (default 1)
#   config=NAME      a YAML file in configs/ (default: tetro_demo.yml)
#   tag=TAG          seed k trains into runs/<dataset>/<MMDD>_<TAG>_seed<k>/
#   seeds=N          how many seeds (default 5): first_seed .. first_seed+N-1, given to each run
#                    as training.seed
#   first_seed=S     the first seed (default 1)
#   eval_data=DIR    also score every run on the images of DIR (e.g. a set generated with a seed
#                    never used for training), into <run>/heldout_scores.json, and summarise those
# Extra arguments are passed to every run's trainer (e.g. --set training.n_epoches=5).
# Logs go to runs/summaries/<MMDD>_<TAG>/seed<k>.log (a taken name gets a _1, _2 suffix), and
# the JSON object each run prints last (its run folder and final scores) to seed<k>.json; the
# summary to runs/summaries/<MMDD>_<TAG>/summary.{tsv,md}, and its table is printed.
# A failed seed does not stop the others; the script then exits with status 1.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh

config=${config:-tetro_demo.yml}
tag=${tag:-default}
seeds=${seeds:-5}
first_seed=${first_seed:-1}
jobs=${jobs:-1}
eval_data=${eval_data:-}
case "$seeds" in '' | *[!0-9]* | 0) echo "seeds=$seeds: expected a positive integer" >&2; exit 2 ;; esac
case "$first_seed" in '' | *[!0-9]*) echo "first_seed=$first_seed: expected an integer >= 0" >&2; exit 2 ;; esac
case "$jobs" in '' | *[!0-9]* | 0) echo "jobs=$jobs: expected a positive integer" >&2; exit 2 ;; esac
if [ -n "$eval_data" ] && [ ! -d "$eval_data" ]; then echo "eval_data=$eval_data: not a folder" >&2; exit 2; fi
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
  echo "cuda=$cuda given but no CUDA device is available: seeds run on the CPU" >&2
  gpus=() parallel=0
fi
cpu_jobs=1
if [ "$parallel" -le 1 ] && [ "$jobs" -gt 1 ]; then
  # CPU seeds side by side: split the cores between them rather than oversubscribing.
  cpu_jobs=$jobs
  export OMP_NUM_THREADS=$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))
fi

run_folder_of() {  # run_folder_of SEED: the run folder named by the JSON object the seed's training printed last
  .venv/bin/python -c 'import json, sys; print(json.loads(sys.stdin.read().splitlines()[-1])["run_folder"])' \
    2>/dev/null < "$out/seed$1.json" || true
}

run_seed() {  # run_seed SEED GPU_ID_OR_EMPTY: train one seed, record its run folder
  local k=$1 gpu=$2 log="$out/seed$1.log" status=0
  echo "seed $k${gpu:+ on GPU $gpu}: log $log" >&2
  if [ "$parallel" -gt 1 ] || [ "$cpu_jobs" -gt 1 ]; then
    cuda=$gpu tag="${tag}_seed$k" ./pipeline.sh --set "training.seed=$k" --no-progress "${extra[@]}" \
      >"$out/seed$k.json" 2>"$log" || status=$?
  else
    # Progress and log on the terminal and in the log file; pipefail keeps the trainer's status.
    cuda=$gpu tag="${tag}_seed$k" ./pipeline.sh --set "training.seed=$k" "${extra[@]}" \
      2>&1 >"$out/seed$k.json" | tee "$log" >&2 || status=$?
  fi
  if [ "$status" -ne 0 ]; then
    echo "seed $k failed (exit $status); see $log" >&2
    echo "$k" >> "$out/failed_seeds"
    return
  fi
  if [ -n "$eval_data" ]; then
    local folder
    folder=$(run_folder_of "$k")
    if .venv/bin/python -m dti_sprites evaluate --run "$folder" --data "$eval_data" --no-progress \
        2>>"$log" | tail -n 1 > "$folder/heldout_scores.json.tmp"; then
      mv "$folder/heldout_scores.json.tmp" "$folder/heldout_scores.json"
    else
      echo "seed $k: scoring on $eval_data failed; see $log" >&2
      echo "$k" >> "$out/failed_seeds"
    fi
  fi
}

rm -f "$out/failed_seeds"
last_seed=$((first_seed + seeds - 1))
if [ "$parallel" -gt 1 ]; then
  # One worker per GPU; worker i takes seeds first+i, first+i+n, ...
  for i in "${!gpus[@]}"; do
    (
      for ((k = first_seed + i; k <= last_seed; k += parallel)); do run_seed "$k" "${gpus[$i]}"; done
    ) &
  done
  wait
elif [ "$cpu_jobs" -gt 1 ]; then
  for ((i = 0; i < cpu_jobs; i++)); do
    (
      for ((k = first_seed + i; k <= last_seed; k += cpu_jobs)); do run_seed "$k" ""; done
    ) &
  done
  wait
else
  for ((k = first_seed; k <= last_seed; k++)); do run_seed "$k" "${gpus[0]:-}"; done
fi

runs=()
for ((k = first_seed; k <= last_seed; k++)); do
  folder=$(run_folder_of "$k")
  [ -n "$folder" ] && runs+=("$folder")
done
if [ ${#runs[@]} -eq 0 ]; then
  echo "no run started; see the logs in $out" >&2
  exit 1
fi
.venv/bin/python -m dti_sprites summarize "${runs[@]}" --out "$out/summary" \
  --title "$config, tag $tag: final scores over ${#runs[@]} seed(s)"
if [ -n "$eval_data" ]; then
  .venv/bin/python -m dti_sprites summarize "${runs[@]}" --out "$out/heldout" --scores-file heldout_scores.json \
    --title "$config, tag $tag: scores on $eval_data over ${#runs[@]} seed(s)"
fi
[ ! -s "$out/failed_seeds" ]
