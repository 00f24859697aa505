#!/usr/bin/env bash
# Issue 21 in transfer scenes whose distractors keep clear of the goal and the cube
# (sigma_sim clear_distractors, the default since commit ce01e9f): after
# `sigma quickstart --transfer --out QS`, the four ablations laid over the same frozen
# base and trained like its Sigma run (300 steps, batch 8), then
#  1. Sigma, LoRA-only, base-longer, the base and the ablations on 50 held-out transfer
#     seeds, paired (OUT/eval-transfer-50);
#  2. instruction once (--instruction-steps 16): Sigma, memory-none and the base on the
#     same seeds (OUT/eval-once-16).
# Usage: clear_scenes.sh QS OUT   (with `sigma` on PATH; one torch thread per job)
set -euo pipefail
export OMP_NUM_THREADS=1
here=$(dirname "$0")
qs=$1 out=$2
mkdir -p "$out"
for name in no-film memory-none curriculum-off identity-adapter; do
  python "$here/on_base.py" "ablation-$name.yaml" "$qs/runs/base/policy" "$out/$name.yaml"
  [ -d "$out/$name/policy" ] || sigma train "$out/$name.yaml" --data "$qs/shards-transfer" \
    --out "$out/$name" --threads 1 > "$out/$name.log" 2>&1
done
t="$qs/runs/transfer"
sigma eval "$t/sigma" "$t/lora-only" "$t/base-longer" "$qs/runs/base" "$out/no-film" \
  "$out/memory-none" "$out/curriculum-off" "$out/identity-adapter" \
  --data "$qs/shards-transfer" --split test --sim 50 --max-seconds 10 --no-plots \
  --workers "${WORKERS:-1}" --out "$out/eval-transfer-50"
sigma eval "$t/sigma" "$out/memory-none" "$qs/runs/base" --data "$qs/shards-transfer" \
  --split test --sim 50 --max-seconds 10 --no-plots --workers "${WORKERS:-1}" \
  --instruction-steps 16 --out "$out/eval-once-16"
