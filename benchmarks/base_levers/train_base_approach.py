"""``sigma quickstart --train-base``'s stages after the first DAgger, from a saved 9-round base.

    python benchmarks/base_levers/train_base_approach.py ROOT [--rounds N]

ROOT holds what the earlier stages made (``data-base/``, ``shards-base/``,
``runs/base-trained/policy``, ``runs/base-continued/policy``, ``base-dagger/round_8``:
here the previous shipped base, sha256 ``7073b17b…``); :func:`sigma_cli.quickstart.train_base`
skips those stages and runs ``base approach DAgger`` (``base-approach/``), then copies
its last round to ``runs/base/policy``. At the full 12 rounds that file must be the
shipped base (its sha256 is checked against ``provenance.json``); ``--rounds 1`` checks
round 0 only. One torch thread (``OMP_NUM_THREADS=1``), about 6 minutes a round.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from sigma_cli.quickstart import FULL, shipped_base, train_base
from sigma_core import sha256_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--rounds", type=int, default=FULL.approach_rounds)
    args = parser.parse_args()
    timings: dict[str, float] = {}
    train_base(args.root, dataclasses.replace(FULL, approach_rounds=args.rounds), 0, timings)
    print(json.dumps(timings))
    last = args.root / "base-approach" / f"round_{args.rounds - 1}" / "model.safetensors"
    got = sha256_file(last)
    provenance = json.loads((shipped_base() / "provenance.json").read_text())
    want = provenance["model.safetensors"]["sha256"]
    print(f"{last}: {got}", "(the shipped base)" if got == want else f"(shipped: {want})")


if __name__ == "__main__":
    main()
