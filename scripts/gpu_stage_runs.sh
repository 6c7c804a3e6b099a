#!/bin/bash
# The train stage itself on a GPU machine of the device tool (docs/benchmarks.md, "The train stage on 2 GPUs").
# Carry .whl and .whl_stage (scripts/collect_gpu_wheels.sh --stage), data/processed, models/base
# and models/plans. Each argument is RUN=VARIANT:STRATEGY[:BACKEND], e.g. fsdp_full=full:fsdp ddp_lora=lora:ddp
# single=full:none plain=full:fsdp:transformers; logs and metrics go to $OUT.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl_stage/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# dvclive wants a git repository with a commit; the copy on the GPU machine has none
git config --global user.email gpu@localhost; git config --global user.name gpu
git init -q && git add -A && git commit -qm "GPU run" >/dev/null
cp params.yaml /tmp/params.yaml
for run in "$@"; do
  name=${run%%=*}; IFS=: read -r variant strategy backend <<< "${run#*=}"
  rm -rf models/checkpoints "metrics/train/$variant" "models/variants/$variant"
  sed -e "s/^  distributed: none/  distributed: $strategy/" -e "s/^  backend: auto/  backend: ${backend:-auto}/" \
    /tmp/params.yaml > params.yaml
  echo "=== $name: $variant, distributed $strategy, backend ${backend:-auto}"
  timeout 200 python3 -m stages.train "$variant" > "$OUT/$name.log" 2>&1; echo "rc=$?"
  grep -E "Error|trained .* steps" "$OUT/$name.log" | sort -u | tail -4
  cp "metrics/train/$variant/metrics.json" "$OUT/${name}_metrics.json" 2>/dev/null
done
cp /tmp/params.yaml params.yaml
