#!/usr/bin/env bash
# Issue 21: declutter as Sigma's pathway. After `sigma quickstart --transfer --out QS`:
#  1. configs/sigma-declutter.yaml (sigma-tiny with vision.tau_stem, no token FiLM) laid
#     over the quickstart's frozen base and trained like its Sigma run (stage sigma, 300
#     steps, batch 8, the transfer demonstrations): OUT/sigma. Its tau stem is still zero
#     (stage sigma does not train it), so this run is also the no-film ablation built on
#     the base's own vision;
#  2. `sigma declutter` on it: 150 closed-loop episodes (seeds 50,000+) in the transfer
#     scenes with uncluttered renders, 1,500 fit steps: OUT/declutter;
#  3. closed loop, paired by seed: both on 100 fresh transfer seeds (10050-10149, those of
#     the s32 table: base, Sigma, LoRA-only, base-longer), on the 50 seeds 10000-10049
#     (the earlier tables) and in the clean scenes (50 seeds).
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
runs=("$out/declutter/policy" "$out/sigma")
w=(--no-plots --max-seconds 10 --workers "${WORKERS:-1}" --split test)
sigma eval "${runs[@]}" --data "$qs/shards-transfer" --sim 100 --seed 50 "${w[@]}" \
  --out "$out/eval-transfer-100"
sigma eval "${runs[@]}" --data "$qs/shards-transfer" --sim 50 "${w[@]}" \
  --out "$out/eval-transfer-50"
sigma eval "${runs[@]}" "$qs/runs/base" --data "$qs/shards" --sim 50 "${w[@]}" \
  --out "$out/eval-clean-50"
