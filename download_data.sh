#!/usr/bin/env bash
# Fetch the original release's preprocessed datasets into datasets/ (Google Drive, via gdown):
#   ./download_data.sh                    every dataset
#   ./download_data.sh dsprites_gray clevr6
# Names: tetrominoes dsprites_gray clevr6 gtsrb weizmann_horse santaphoto weddingkiss
# (instagram = both collections). A dataset whose folder exists is skipped; a failed one
# leaves nothing behind, and the script exits non-zero when any failed.
# Creates .venv and installs the package on first use.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
exec .venv/bin/python -m dti_sprites download "$@"
