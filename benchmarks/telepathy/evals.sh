#!/usr/bin/env bash
# Issue 21: the transfer runs of qs-full and the memory-none ablation, 50 held-out seeds.
set -euo pipefail
export OMP_NUM_THREADS=1
S=/work/main/.venv/bin/sigma
while [ ! -d runs21/memory-none/policy ]; do sleep 10; done
$S eval qs-full/runs/transfer/sigma runs21/memory-none qs-full/runs/transfer/lora-only qs-full/runs/transfer/base-longer qs-full/runs/base \
  --data qs-full/shards-transfer --split test --sim 50 --max-seconds 10 --no-plots --out runs21/eval-transfer-50 > runs21/eval-transfer-50.log 2>&1
$S eval qs-full/runs/transfer/sigma runs21/memory-none qs-full/runs/base \
  --data qs-full/shards-transfer --split test --sim 50 --max-seconds 10 --no-plots --instruction-steps 16 --out runs21/eval-once-16 > runs21/eval-once-16.log 2>&1
echo done
