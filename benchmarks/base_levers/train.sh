#!/usr/bin/env bash
# Train levers one after another (one lane; run two lanes on two cores).
#   benchmarks/base_levers/train.sh SHARDS RUNS NAME:SPEC:STEPS ...
# Each run: sigma train SPEC --steps STEPS on SHARDS into RUNS/NAME, 1 thread, validation
# every 1000 steps; a finished run (RUNS/NAME/policy) is skipped, a killed one resumes.
set -euo pipefail
shards=$1 runs=$2; shift 2
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for job in "$@"; do
  IFS=: read -r name spec steps <<<"$job"
  [ -d "$runs/$name/policy" ] && { echo "$name: done"; continue; }
  resume=(); [ -e "$runs/$name/last" ] && resume=(--resume)
  start=$(date +%s)
  sigma train "$spec" --out "$runs/$name" --data "$shards" --steps "$steps" --threads 1 \
    --checkpoint-every 500 --val-every 1000 "${resume[@]}" > "$runs/$name.log" 2>&1
  echo "$name: $(( $(date +%s) - start )) s"
done
