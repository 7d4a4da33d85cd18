#!/usr/bin/env bash
# Train one run. Variables (all optional), as in the original release:
#   cuda=ID      GPU id(s) to use (unset or no GPU: CPU); several ids (cuda=0,1) start one
#                process per GPU with torchrun, sharing each global batch
#   config=NAME  a YAML file in configs/ (default: tetro_demo.yml, the CPU demo)
#   tag=TAG      run name; outputs go to runs/<dataset>/<MMDD>_<TAG>/
# Extra arguments are passed to `dti-sprites train` (e.g. --set training.n_epoches=5).
# Creates .venv and installs the package on first use; generates the synthetic
# Tetrominoes into datasets/ when the config needs it and it is absent.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh

config=${config:-tetro_demo.yml}
tag=${tag:-default}
device=cpu
if [ -n "${cuda:-}" ]; then
  if .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    export CUDA_VISIBLE_DEVICES="$cuda"
    device=cuda
  else
    echo "cuda=$cuda given but no CUDA device is available: training on the CPU" >&2
  fi
fi

.venv/bin/python -m dti_sprites prepare-data --config "$config"
n_gpus=$(echo "${cuda:-}" | tr ',' '\n' | grep -c . || true)
if [ "$device" = cuda ] && [ "$n_gpus" -gt 1 ]; then
  # One process per GPU; the global batch of the config is split between them.
  exec .venv/bin/torchrun --standalone --nproc_per_node="$n_gpus" -m dti_sprites train \
    --config "$config" --tag "$tag" --device cuda "$@"
fi
exec .venv/bin/python -m dti_sprites train --config "$config" --tag "$tag" --device "$device" "$@"
