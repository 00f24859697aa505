#!/usr/bin/env bash
# Issue 21: the transfer runs of a `sigma quickstart --transfer --out qs-full` and the
# memory-none ablation laid over the same frozen base, on 50 held-out transfer seeds:
# the instruction always shown, then shown for the first 16 control steps only.
# Run from the directory that holds qs-full/ (with `sigma` on PATH).
set -euo pipefail
export OMP_NUM_THREADS=1
mkdir -p runs21
python "$(dirname "$0")/on_base.py" ablation-memory-none.yaml qs-full/runs/base/policy \
  runs21/memory-none.yaml
[ -d runs21/memory-none/policy ] || sigma train runs21/memory-none.yaml \
  --data qs-full/shards-transfer --out runs21/memory-none --threads 1 > runs21/memory-none.log 2>&1
sigma eval qs-full/runs/transfer/sigma runs21/memory-none qs-full/runs/transfer/lora-only \
  qs-full/runs/transfer/base-longer qs-full/runs/base --data qs-full/shards-transfer \
  --split test --sim 50 --max-seconds 10 --no-plots --out runs21/eval-transfer-50
sigma eval qs-full/runs/transfer/sigma runs21/memory-none qs-full/runs/base \
  --data qs-full/shards-transfer --split test --sim 50 --max-seconds 10 --no-plots \
  --instruction-steps 16 --out runs21/eval-once-16
