#!/bin/bash
# The train stage itself on a GPU machine of the device tool (docs/benchmarks.md, "The train stage on 2 GPUs").
# Carry data/processed, models/base and models/plans, with the wheels of scripts/gpu_wheels.py collect (.whl1,
# .whl2, ...: one folder a call; the script stops until all are there). Each argument is
# RUN=VARIANT:STRATEGY[:BACKEND], e.g. fsdp_full=full:fsdp ddp_lora=lora:ddp single=full:none
# plain=full:fsdp:transformers; logs and metrics go to $OUT.
set -u
python3 scripts/gpu_wheels.py install --target /tmp/site || exit
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
