#!/usr/bin/env bash
# Collect the wheels the GPU machine lacks (its python3 3.12 image has torch, transformers, peft, accelerate, but
# not trl, datasets, liger-kernel, pydantic) into .whl/, which the device call carries and installs with:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# Versions are the project venv's, so the GPU runs the same TRL/transformers/PEFT code the CPU tests exercise.
# With --stage, also .whl_stage/: dvc, dvclive and what they need there, for running `python -m stages.train` on
# that machine (scripts/gpu_stage_runs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
for d in /.whl/ /.whl_stage/; do grep -qx "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
PY=${PYTHON:-.venv/bin/python}
ver() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pkgs=(trl datasets dill multiprocess transformers peft pydantic pydantic_core annotated-types typing-inspection)
download() {  # folder, then package names (at the venv's version) or pinned name==version specs
  local dir=$1 specs=(); shift
  for p in "$@"; do [[ $p == *==* ]] && specs+=("$p") || specs+=("$p==$(ver "$p")"); done
  rm -rf "$dir" && mkdir -p "$dir"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "${specs[@]}"
  du -sh "$dir"
}
# liger-kernel is CUDA-only: not in the CPU venv, so its version is pinned here
download .whl "${pkgs[@]}" "liger-kernel==${LIGER_VERSION:-0.8.5}"
if [[ ${1:-} == --stage ]]; then
  download .whl_stage dvc dvclive dvc-render dvc-studio-client dvc-data dvc-http dvc-objects funcy flatten-dict \
    voluptuous ruamel.yaml nvidia-ml-py tabulate colorama wcwidth attrs diskcache dpath dulwich flufl.lock orjson \
    pathspec atpublic pygtrie scmrepo sqltrie zc.lockfile pygit2 gitpython gitdb smmap aiohttp-retry platformdirs \
    configobj pydot pytz chardet sniffio truststore jmespath
fi
