"""The spec of a base taught every cube's position by colour (issue 21, named_probe.py).

    python benchmarks/telepathy/base_colours.py BASE_POLICY_DIR SHARDS OUT.yaml [--steps 2000]
    sigma train OUT.yaml --data SHARDS --out RUN --threads 1

The base's own saved spec, continued from its weights (``train.init_from``, lr 3e-4,
``--steps``), with weight 1 in ``train.losses.state_weights`` on the per-colour entries
of the environment state (``red_cube.x, .y, .present``, the same for green and blue),
which the shipped base leaves at 0: its estimator then also says where a cube of each
colour is. ``named_probe.py RUN/policy ...`` reads those entries back in the transfer
scenes ("the named colour's entries").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from sigma_core import get_registry, validate_spec
from sigma_core.data import read_meta

ENTRIES = ("x", "y", "present")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("shards", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    spec = json.loads((args.base / "sigma.json").read_text())["spec"]
    names = read_meta(args.shards)["source"]["environment_state_names"]
    weights = spec["train"]["losses"]["state_weights"]
    for colour in ("red", "green", "blue"):
        for entry in ENTRIES:
            weights[names.index(f"{colour}_cube.{entry}")] = 1.0
    spec["train"] |= {"steps": args.steps, "lr": 3e-4, "init_from": str(args.base)}
    spec["data"]["path"] = str(args.shards)
    validate_spec(spec, get_registry(), source=str(args.out))
    args.out.write_text(yaml.safe_dump(spec, sort_keys=False))
    print(args.out)


if __name__ == "__main__":
    main()
