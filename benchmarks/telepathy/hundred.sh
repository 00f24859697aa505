#!/usr/bin/env bash
# Issue 21 at 1,500 steps on 100 seeds: after longer.sh (Sigma and LoRA-only, 1,500 steps)
# and correction.sh (Sigma + model.scene_correction), train the compute-matched base-longer
# and the memory-none ablation for the same 1,500 steps, then
#  1. the five policies on 100 held-out transfer seeds, paired (runs23/eval-transfer-100);
#  2. instruction once (--instruction-steps 16): Sigma, memory-none and the base on the same
#     100 seeds (runs23/eval-once-16-100).
# Run from the directory that holds qs-full/ (with `sigma` on PATH).
set -euo pipefail
export OMP_NUM_THREADS=1
here=$(dirname "$0")
mkdir -p runs21 runs23
# base-longer: the quickstart's base-longer spec (the base's own spec continued from it)
python - <<'PY'
import json, yaml
spec = json.load(open("qs-full/runs/transfer/base-longer/policy/sigma.json"))["spec"]
spec["train"]["steps"] = 1500
open("runs21/base-longer-1500.yaml", "w").write(yaml.safe_dump(spec, sort_keys=False))
PY
python "$here/on_base.py" ablation-memory-none.yaml qs-full/runs/base/policy \
  runs21/memory-none-1500.yaml --steps 1500
for name in base-longer-1500 memory-none-1500; do
  [ -d "runs21/$name/policy" ] || sigma train "runs21/$name.yaml" --data qs-full/shards-transfer \
    --out "runs21/$name" --threads 1 > "runs21/$name.log" 2>&1
done
sigma eval runs23/sigma-correction-1500 runs21/sigma-1500 runs21/lora-1500 \
  runs21/base-longer-1500 qs-full/runs/base --data qs-full/shards-transfer --split test \
  --sim 100 --max-seconds 10 --no-plots --workers 1 --out runs23/eval-transfer-100
sigma eval runs21/sigma-1500 runs21/memory-none-1500 qs-full/runs/base \
  --data qs-full/shards-transfer --split test --sim 100 --max-seconds 10 --no-plots \
  --workers 1 --instruction-steps 16 --out runs23/eval-once-16-100
