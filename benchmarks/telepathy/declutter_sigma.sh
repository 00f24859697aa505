#!/usr/bin/env bash
# Issue 21: declutter as Sigma's pathway. After `sigma quickstart --transfer --out QS`:
#  1. configs/sigma-declutter.yaml (vision.tau_stem, model.tau_route: vision, identity
#     adapter) laid over the quickstart's frozen base and trained like its Sigma run
#     (stage sigma, 300 steps, batch 8, the transfer demonstrations): OUT/sigma. Its tau
#     stem is still zero (stage sigma does not train it), so it acts exactly as the base;
#  2. `sigma declutter` on it: 150 closed-loop episodes (seeds 50,000+) in the transfer
#     scenes with uncluttered renders, 1,500 fit steps: OUT/declutter;
#  3. closed loop, paired by seed with the s32 table's runs: on 100 fresh transfer seeds
#     (10050-10149) and in the clean scenes (50 seeds, with the base).
# (`sigma quickstart --transfer` now runs 1 and 2 itself, as runs/transfer/declutter.)
# Usage: declutter_sigma.sh QS OUT   (with `sigma` on PATH; one torch thread per job)
set -euo pipefail
export OMP_NUM_THREADS=1
here=$(dirname "$0")
qs=$1 out=$2
mkdir -p "$out"
python "$here/on_base.py" sigma-declutter.yaml "$qs/runs/base/policy" "$out/sigma.yaml"
[ -d "$out/sigma/policy" ] || sigma train "$out/sigma.yaml" --data "$qs/shards-transfer" \
  --out "$out/sigma" --threads 1 > "$out/sigma.log" 2>&1
sigma declutter "$out/sigma/policy" --data "$qs/shards-transfer" --out "$out/declutter" \
  --episodes 150 --steps 1500 > "$out/declutter.log"
w=(--no-plots --max-seconds 10 --workers "${WORKERS:-1}" --split test)
sigma eval "$out/declutter" --data "$qs/shards-transfer" --sim 100 --seed 50 "${w[@]}" \
  --out "$out/eval-transfer-100"
sigma eval "$out/declutter" "$qs/runs/base" --data "$qs/shards" --sim 50 "${w[@]}" \
  --out "$out/eval-clean-50"
