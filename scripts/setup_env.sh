#!/usr/bin/env bash
# One-time, idempotent set-up of clump_d2's Python environment in ./.venv.
# Re-running it does nothing once the environment matches requirements.txt and setup.py.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=${CLUMP_D2_VENV:-.venv}
STAMP="$VENV/.clump_d2_setup"
# The stamp records what the environment was built from; any change triggers an update.
WANT=$(cat requirements.txt setup.py scripts/setup_env.sh scripts/install_detectron2.py | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi

echo "[setup] creating/updating the environment in $VENV (one time; a few minutes)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip setuptools wheel
# torch/torchvision: the versions this machine keeps on disk (no multi-GB download).
"${PIP[@]}" install -q torch==2.14.1 torchvision==0.29.1
"${PIP[@]}" install -q -r requirements.txt
"$VENV/bin/python" scripts/install_detectron2.py
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import clump_d2, detectron2; print('[setup] clump_d2 ready; detectron2', detectron2.__version__)"
echo "$WANT" > "$STAMP"
