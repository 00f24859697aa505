#!/usr/bin/env bash
# Issue 21: Sigma and LoRA-only with 5x the quickstart's budget (1,500 steps at batch 8) on
# the transfer data, on the same frozen base; then the 50 transfer seeds, paired.
# Run from the directory that holds qs-full/ (a `sigma quickstart --transfer --out qs-full`).
set -euo pipefail
export OMP_NUM_THREADS=1
mkdir -p runs21
for run in sigma-tiny.yaml:sigma-1500 control-lora-only.yaml:lora-1500; do
  IFS=: read -r config name <<<"$run"
  python "$(dirname "$0")/on_base.py" "$config" qs-full/runs/base/policy "runs21/$name.yaml" --steps 1500
  [ -d "runs21/$name/policy" ] || sigma train "runs21/$name.yaml" --data qs-full/shards-transfer \
    --out "runs21/$name" --threads 1 > "runs21/$name.log" 2>&1
done
sigma eval runs21/sigma-1500 runs21/lora-1500 qs-full/runs/base --data qs-full/shards-transfer \
  --split test --sim 50 --max-seconds 10 --no-plots --out runs21/eval-transfer-1500
