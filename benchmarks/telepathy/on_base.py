"""Write the spec of a pathway config laid over a trained base, as the quickstart builds its runs.

    python benchmarks/telepathy/on_base.py CONFIG BASE_POLICY_DIR OUT.yaml \
        [--steps 300] [--batch-size 8] [--run-length 4]

CONFIG is a shipped config name (``sigma-tiny.yaml``, ``ablation-memory-none.yaml``,
``control-lora-only.yaml``, ...) or a path. The base's architecture (its saved spec's
``model``: dims, vision, scene state, backbone, branches) and its
``train.losses.state_weights`` are kept; the config's own pathway settings (where it
differs from ``configs/base-tiny.yaml``) are laid over them
(:func:`sigma_cli.quickstart.on_base`), so the ablations of issue 21 train on the
quickstart's base exactly as its Sigma run does. ``base_policy.path`` is the base.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from sigma_cli.quickstart import on_base, shipped_config
from sigma_core import get_registry, validate_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("base")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--run-length", type=int, default=4)
    args = parser.parse_args()
    path = Path(args.config)
    run = yaml.safe_load(path.read_text()) if path.is_file() else shipped_config(args.config)
    base = json.loads((Path(args.base) / "sigma.json").read_text())["spec"]
    raw = on_base(run, base)
    raw["data"] = {"batch_size": args.batch_size, "run_length": args.run_length}
    raw["train"]["steps"] = args.steps
    raw["base_policy"]["path"] = str(args.base)
    validate_spec(raw, get_registry(), source=args.out)  # refuse a bad spec before writing
    Path(args.out).write_text(yaml.safe_dump(raw, sort_keys=False))
    print(args.out)


if __name__ == "__main__":
    main()
