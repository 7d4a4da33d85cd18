#!/usr/bin/env bash
# Set up .venv if needed, then run the default test suite (slow tests: add --runslow).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
