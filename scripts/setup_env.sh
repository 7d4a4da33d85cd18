# Sourced by pipeline.sh and scripts/test.sh: create .venv if absent and install the package.
# PIP_CONSTRAINT reaches isolated build environments too, which visdom's source build needs
# (its setup.py imports pkg_resources, removed from setuptools 81).
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PYTHON" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.dti-sprites-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing dti-sprites and its dependencies into .venv (first time: a few minutes)" >&2
  PIP_CONSTRAINT="$PWD/requirements/build-constraints.txt" .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
