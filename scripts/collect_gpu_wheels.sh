#!/usr/bin/env bash
# Collect the wheels the GPU machine lacks (its python3 3.12 image has torch, transformers, peft, accelerate, but
# not trl, datasets, liger-kernel, pydantic) into .whl/, which the device call carries and installs with:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# Versions are the project venv's, so the GPU runs the same TRL/transformers/PEFT code the CPU tests exercise.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
PY=${PYTHON:-.venv/bin/python}
ver() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pkgs=(trl datasets dill multiprocess transformers peft pydantic pydantic_core annotated-types typing-inspection)
specs=()
for p in "${pkgs[@]}"; do specs+=("$p==$(ver "$p")"); done
specs+=("liger-kernel==${LIGER_VERSION:-0.8.5}")
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${specs[@]}"
ls -la .whl
