#!/usr/bin/env bash
# Issue 21, the design change: Sigma with model.scene_correction (the tau pass reads a
# corrected scene estimate s_tau, supervised by the named cube's truth while training) on
# a frozen camera-only base, 1,500 steps at batch 8 on the transfer data, as longer.sh
# trains Sigma and LoRA-only.
#   benchmarks/telepathy/correction.sh BASE_POLICY_DIR SHARDS OUT_DIR [NAME]
# Run from the directory that holds the data (with `sigma` on PATH).
set -euo pipefail
base=$1 shards=$2 out=$3 name=${4:-sigma-correction-1500}
export OMP_NUM_THREADS=1
mkdir -p "$out"
here=$(dirname "$0")
python "$here/on_base.py" sigma-tiny.yaml "$base" "$out/$name.yaml" --steps 1500
python - "$out/$name.yaml" <<'PY'
import sys, yaml
path = sys.argv[1]
spec = yaml.safe_load(open(path))
spec["model"]["scene_correction"] = True
open(path, "w").write(yaml.safe_dump(spec, sort_keys=False))
PY
resume=(); [ -e "$out/$name/last" ] && resume=(--resume)
[ -d "$out/$name/policy" ] || sigma train "$out/$name.yaml" --data "$shards" --out "$out/$name" \
  --threads 1 --checkpoint-every 250 "${resume[@]}" > "$out/$name.log" 2>&1
