#!/usr/bin/env bash
# Issue 21 on a base that acts on its scene state (issue 20's truth-only base after five
# rounds of estimator DAgger, 44% clean): how much a perfect named-cube estimate is worth in
# the transfer scenes (truth_oracle.py --entries named), then Sigma, Sigma with
# model.scene_correction, LoRA-only and the compute-matched base-longer, 1,500 steps at batch
# 8 on the transfer data, all on 100 held-out transfer seeds with the frozen base, paired.
#   benchmarks/telepathy/acting_base.sh BASE_POLICY_DIR SHARDS OUT_DIR [SEEDS]
# SHARDS: the quickstart's shards-transfer (normalized with the base's statistics).
# Run with `sigma` and the venv's python on PATH; one torch thread per job.
set -euo pipefail
base=$1 shards=$2 out=$3 seeds=${4:-100}
export OMP_NUM_THREADS=1
here=$(dirname "$0")
levers=$here/../base_levers
mkdir -p "$out"
[ -f "$out/oracle-named/report.json" ] || python "$levers/truth_oracle.py" "$base" "$shards" \
  "$out/oracle-named" --entries named > "$out/oracle-named.log" 2>&1
bash "$here/correction.sh" "$base" "$shards" "$out" sigma-correction-1500
python "$here/on_base.py" sigma-tiny.yaml "$base" "$out/sigma-1500.yaml" --steps 1500
python "$here/on_base.py" control-lora-only.yaml "$base" "$out/lora-1500.yaml" --steps 1500
python - "$base" "$out/base-longer-1500.yaml" <<'PY'
import json, sys, yaml
base, path = sys.argv[1:]
spec = json.load(open(f"{base}/sigma.json"))["spec"]  # the base's own spec, continued
spec["data"] = {"batch_size": 8}
spec["train"] |= {"steps": 1500, "init_from": base}
open(path, "w").write(yaml.safe_dump(spec, sort_keys=False))
PY
for name in sigma-1500 lora-1500 base-longer-1500; do
  [ -d "$out/$name/policy" ] || sigma train "$out/$name.yaml" --data "$shards" --out "$out/$name" \
    --threads 1 > "$out/$name.log" 2>&1
done
sigma eval "$out/sigma-1500" "$out/sigma-correction-1500" "$out/lora-1500" \
  "$out/base-longer-1500" "$base" --data "$shards" --split test --sim "$seeds" \
  --max-seconds 10 --no-plots --workers 1 --out "$out/eval-transfer-$seeds"
