"""Copies of a stage-sigma policy whose residual is scaled down at inference (issue 21).

    python benchmarks/telepathy/residual_scale.py RUN OUT --scales 0.5 0.25

Sigma acts as ``a = a_base + s · Δa`` with the risk adapter's
``s = min_scale + (max_scale − min_scale) exp(−risk / T)`` (paper §5). Each copy
``OUT/alpha-A/policy`` is the policy at ``RUN`` (same weights, byte for byte) with the
adapter's ``max_scale`` and ``min_scale`` multiplied by ``A``, so its residual is ``A``
times the trained one wherever the fallback does not cut it (``s < fallback_below`` falls
back to the base, as before). ``A = 0`` is the frozen base. Evaluate the copies with
``sigma eval OUT/alpha-*/policy ...`` on the seeds of the original's report: the
simulator is deterministic per seed, so the curve is paired by seed with the base and
the unscaled policy. This asks one question before any training lever: is the trained
residual helpful at some scale, or harmful at every one?
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def scaled_copy(policy: Path, out: Path, alpha: float) -> Path:
    """``out`` = ``policy`` with the risk adapter's scale range multiplied by ``alpha``."""
    saved = json.loads((policy / "sigma.json").read_text())
    adapter = saved["spec"]["model"]["adapter"]
    if adapter.get("type") != "risk":
        raise SystemExit(f"{policy}: adapter {adapter.get('type')!r}, not risk")
    adapter["max_scale"] = adapter.get("max_scale", 1.0) * alpha
    adapter["min_scale"] = adapter.get("min_scale", 0.0) * alpha
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(policy / "model.safetensors", tmp / "model.safetensors")
    (tmp / "sigma.json").write_text(json.dumps(saved, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a stage-sigma run dir or policy dir")
    parser.add_argument("out", type=Path)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.25])
    args = parser.parse_args()
    policy = args.run / "policy" if (args.run / "policy").is_dir() else args.run
    for alpha in args.scales:
        print(scaled_copy(policy, args.out / f"alpha-{alpha:g}" / "policy", alpha))


if __name__ == "__main__":
    main()
