"""The levers table: closed-loop outcomes of several `sigma eval --sim` reports, paired by seed.

    python benchmarks/base_levers/table.py REF=DIR/report.json NAME=DIR/report.json#POLICY ...

Every report must come from `sigma eval ... --sim N` on the same shards and seeds (the
simulator is deterministic per seed, so separate evaluations of separate policies are
paired by seed). For each policy: success, reached, grasped, lifted with 95% Wilson
intervals, mean closest approach of the tool to the cube, offline mse_trj and
image_reliance on the held-out windows, and each outcome's difference against REF (the
first argument) on the same seeds with a 95% bootstrap interval over seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from sigma_core.eval import wilson

OUTCOMES = ("reached", "grasped", "lifted", "success")


def load(arg: str) -> tuple[str, str, dict[str, Any]]:
    """``NAME=PATH[#POLICY]`` -> (row name, the policy's name in the report, report)."""
    name, _, where = arg.rpartition("=")
    path, _, policy = where.partition("#")
    report = json.loads(Path(path).read_text())
    policies = list(report["closed_loop"])
    if not policy:
        if len(policies) != 1:
            raise SystemExit(f"{path}: several policies {policies}; name one as PATH#POLICY")
        policy = policies[0]
    return name or policy, policy, report


def bootstrap(diff: np.ndarray, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``diff`` resampled over seeds."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n, len(diff)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def rows(args: list[str]) -> list[dict[str, Any]]:
    loaded = [load(a) for a in args]
    ref_eps = None
    out = []
    for name, policy, report in loaded:
        loop = report["closed_loop"][policy]
        eps = {e["seed"]: e for e in loop["episodes_detail"]}
        metrics = report["groups"][policy]["metrics"]
        row: dict[str, Any] = {"name": name, "episodes": len(eps)}
        for k in OUTCOMES:
            row[k] = wilson(sum(bool(e[k]) for e in eps.values()), len(eps)).as_dict()
        row["closest_cm"] = 100 * float(np.mean([e["min_tcp_to_obj"] for e in eps.values()]))
        for k in ("mse_trj", "image_reliance"):
            row[k] = metrics.get(k)
        if ref_eps is None:
            ref_eps = eps
        else:
            seeds = sorted(set(eps) & set(ref_eps))
            row["paired_seeds"] = len(seeds)
            for k in (*OUTCOMES, "min_tcp_to_obj"):
                d = np.array([float(eps[s][k]) - float(ref_eps[s][k]) for s in seeds])
                d = d * (100 if k == "min_tcp_to_obj" else 1)
                row[f"d_{k}"] = (float(d.mean()), *bootstrap(d))
        out.append(row)
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    def pct(w: dict[str, Any]) -> str:
        return f"{w['estimate']:.0%} [{w['low']:.0%}, {w['high']:.0%}]"

    def diff(t: tuple[float, float, float] | None, scale: str = "") -> str:
        if t is None:
            return "ref"
        return f"{t[0]:+.2f} [{t[1]:+.2f}, {t[2]:+.2f}]{scale}"

    head = (
        "| run | n | success | reached | grasped | lifted | closest cm | mse_trj "
        "| image_reliance | Δ success vs ref | Δ closest cm vs ref |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in table:
        num = lambda v: "–" if v is None else f"{v:.3g}"  # noqa: E731
        lines.append(
            f"| {r['name']} | {r['episodes']} | {pct(r['success'])} | {pct(r['reached'])} "
            f"| {pct(r['grasped'])} | {pct(r['lifted'])} | {r['closest_cm']:.1f} "
            f"| {num(r['mse_trj'])} | {num(r['image_reliance'])} "
            f"| {diff(r.get('d_success'))} | {diff(r.get('d_min_tcp_to_obj'))} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="NAME=report.json; the first is the reference")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    table = rows(args.reports)
    print(json.dumps(table, indent=1) if args.json else markdown(table))


if __name__ == "__main__":
    main()
