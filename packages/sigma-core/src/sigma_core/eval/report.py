"""``sigma eval``: the report of an offline replay, in the paper's files and ours.

Files written (atomically: the directory appears complete or not at all)::

    report.json              schema ``sigma-eval/1`` (below)
    report.md                the tables, for people
    sigma_eval_checkA.json   telepathy-head tensor statistics per group (the paper's CHECK A)
    sigma_eval_checkB.json   per-batch table of every group (the paper's CHECK B)
    windows.jsonl            every (window, group) row the tables come from
    plots/                   paired_episodes.png, mse_by_scale.png, closed_loop.png
                             (with --sim) (matplotlib)

``report.json`` (``"schema": "sigma-eval/1"``): ``split``, ``stride``, ``data``
({path, meta_sha256, episodes, windows}), ``groups`` ({name: {source, stage,
weights_sha256, spec, components, windows, metrics: {metric: mean}}}),
``comparisons`` ([{a, b, metric, episodes, difference: {estimate, low, high,
level, n}}], ``a − b`` with a paired bootstrap over episodes), ``versions``, and
with a closed-loop evaluation ``closed_loop`` ({name: the rollout summary: success
rate with its Wilson interval, progress-stage rates, wrong-object rate, latency
percentiles, per-episode outcomes}) and ``closed_loop_comparisons`` (the same
shape as ``comparisons``, ``a − b`` per :data:`CLOSED_LOOP_COMPARED` outcome with
a paired bootstrap over the simulator seeds every policy ran on).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sigma_core._fileio import atomic_dir, sha256_file
from sigma_core.data import ShardDataset, check_dims, shard_dims
from sigma_core.errors import SigmaUserError
from sigma_core.eval.device import resolve_device
from sigma_core.eval.replay import EPISODES_PER_BATCH, METRICS, Source, open_source, replay_source
from sigma_core.eval.stats import paired_bootstrap
from sigma_core.model.checkpoint import WEIGHTS, read_meta
from sigma_core.train.stages import telepathy_parameter_names

SCHEMA = "sigma-eval/1"
COMPARED = ("mse_vec", "mse_chk", "mse_trj", "mse_vec_units", "mse_chk_units", "mse_trj_units")
#: The closed-loop progress stages, in task order (each a rate in the rollout summary).
STAGES = ("reached", "grasped", "lifted", "success")
#: Per-episode closed-loop outcomes compared between policies (booleans count as 0/1).
CLOSED_LOOP_COMPARED = (
    *STAGES,
    "wrong_object",
    "min_tcp_to_obj",
    "min_obj_to_goal",
)
#: The per-episode outcome record a closed-loop evaluator returns in ``episodes_detail``
#: (``sigma_sim.rollout.summarize`` writes these; the comparisons pair them by seed).
CLOSED_LOOP_EPISODE_FIELDS = ("seed", *CLOSED_LOOP_COMPARED, "steps", "seconds_to_success")


def check_a(source: Source) -> dict[str, Any]:
    """CHECK A: count, numel, mean, std and rms of the telepathy-head tensors of a policy
    (a :meth:`~sigma_core.eval.Source.loaded` source)."""
    policy = source.policy
    if policy is None:
        raise ValueError(f"{source.name}: check_a needs the source loaded (Source.loaded)")
    params = dict(policy.named_parameters())
    names = sorted(telepathy_parameter_names(policy))
    flat = torch.cat([params[n].detach().float().flatten() for n in names])
    return {
        "tensors": len(names),
        "numel": int(flat.numel()),
        "mean": flat.mean().item(),
        "std": flat.std().item(),
        "rms": flat.pow(2).mean().sqrt().item(),
    }


def check_b(rows: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    """CHECK B: batches of ``batch_size`` windows in replay order, every group's means."""
    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_group[r["group"]].append(r)
    out = []
    for group, rs in by_group.items():
        for b in range(0, len(rs), batch_size):
            chunk = rs[b : b + batch_size]
            keys = ("mse_vec", "mse_chk", "mse_trj", "tau_l2", "sem_align")
            mean = {k: float(np.mean([r[k] for r in chunk])) for k in keys}
            out.append({"group": group, "batch": b // batch_size, "windows": len(chunk)} | mean)
    return out


def per_episode(rows: list[dict[str, Any]], group: str, metric: str) -> dict[int, float]:
    """episode -> the mean of ``metric`` over its windows, for one group."""
    acc: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if r["group"] == group:
            acc[r["episode"]].append(r[metric])
    return {e: float(np.mean(v)) for e, v in sorted(acc.items())}


def comparisons(
    rows: list[dict[str, Any]], pairs: list[tuple[str, str]], seed: int
) -> list[dict[str, Any]]:
    """``a − b`` per metric with a paired bootstrap over episodes (95%, seeded)."""
    out = []
    for a, b in pairs:
        for metric in COMPARED:
            ea, eb = per_episode(rows, a, metric), per_episode(rows, b, metric)
            episodes = sorted(set(ea) & set(eb))
            diff = paired_bootstrap(
                np.array([ea[e] for e in episodes]), np.array([eb[e] for e in episodes]), seed=seed
            )
            out.append(
                {"a": a, "b": b, "metric": metric, "episodes": len(episodes)}
                | {"difference": diff.as_dict()}
            )
    return out


def closed_loop_comparisons(
    loops: dict[str, dict[str, Any]], first: str, seed: int
) -> list[dict[str, Any]]:
    """``a − first`` per closed-loop outcome, paired by simulator seed (95% bootstrap).

    Every policy runs the same seeds, so the episode with seed ``s`` is the same
    scene for all of them: pairing removes the scene-to-scene variance that makes
    two separate success rates hard to compare.
    """

    def outcomes(name: str) -> dict[int, dict[str, Any]]:
        return {e["seed"]: e for e in loops[name].get("episodes_detail", [])}

    ref = outcomes(first)
    out = []
    for name in loops:
        if name == first:
            continue
        mine = outcomes(name)
        seeds = sorted(set(ref) & set(mine))
        if not seeds:
            continue
        for metric in CLOSED_LOOP_COMPARED:
            diff = paired_bootstrap(
                np.array([float(mine[s][metric]) for s in seeds]),
                np.array([float(ref[s][metric]) for s in seeds]),
                seed=seed,
            )
            out.append(
                {"a": name, "b": first, "metric": metric, "episodes": len(seeds)}
                | {"difference": diff.as_dict()}
            )
    return out


def _pairs(sources: list[Source]) -> list[tuple[str, str]]:
    pairs = []
    for s in sources:
        if s.telepathy:
            pairs += [(s.name, f"{s.name}:base"), (s.name, f"{s.name}:no-adapter")]
    first = sources[0].name
    pairs += [(s.name, first) for s in sources[1:]]
    return pairs


def _versions() -> dict[str, str]:
    out = {}
    for name in ("sigma-vla-core", "torch", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def evaluate(
    policies: list[str | Path],
    data: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    seed: int = 0,
    plots: bool = True,
    closed_loop: Callable[[Source, dict[str, Any]], dict[str, Any]] | None = None,
    device: str | torch.device = "cpu",
    episodes_per_batch: int = EPISODES_PER_BATCH,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Replay every policy's groups on the held-out ``split`` of ``data``; write the report.

    ``split`` and the CHECK B batch size default to the first policy's ``eval:``
    section. Every policy's spec is read and checked against the data first; then
    the policies are built one at a time onto ``device`` (``auto``, ``cpu``,
    ``cuda``), each replayed ``episodes_per_batch`` episodes per forward, measured
    (CHECK A) and, with ``closed_loop(source, shards_meta)`` (e.g.
    ``sigma_sim.rollout``; ``source.policy`` is the loaded model), run in closed
    loop, then freed before the next is built: only per-window and per-seed
    outcomes are kept, which is what the paired comparisons read. ``log`` gets a
    line as each policy starts. Returns the ``report.json`` content.

    Raises:
        SigmaUserError: a directory without a saved policy, policies or data whose
            dims differ, a split with no episodes, an unknown or unavailable device;
            ``plots`` without matplotlib (before any compute, so that a missing
            plotting library never discards an evaluation).
    """
    if not policies:
        raise SigmaUserError("give at least one run directory or saved policy")
    if plots:
        pyplot()
    where = resolve_device(str(device))
    sources = [open_source(p) for p in policies]
    if len({s.name for s in sources}) != len(sources):  # two runs with one directory name
        for i, s in enumerate(sources):
            s.name = f"{i}:{s.name}"
    spec = sources[0].spec  # the first policy's eval: section gives the defaults
    split = split or spec.eval.split
    dims = spec.model.dims
    ds = ShardDataset(
        data,
        split=split,
        frame_history=dims.frame_history,
        environment_state=max(s.spec.model.observed_scene_state_dim for s in sources),
    )
    have = shard_dims(ds.meta)
    held_out = set(ds.meta["split"][split]["episodes"])
    for s in sources:  # every group matches the data, so the groups match each other
        check_dims(s.spec.model.dims, have, f"{data} (for {s.directory})")
        check_held_out(s, ds.meta, held_out, Path(data))
    stride = spec.run_stride()
    rows: list[dict[str, Any]] = []
    tensors: dict[str, dict[str, Any]] = {}
    loops: dict[str, dict[str, Any]] = {}
    for n, s in enumerate(sources, start=1):
        if log is not None:
            log(f"{s.name} ({n}/{len(sources)}): loading onto {where} ...")
        with s.loaded(where):  # one policy in memory at a time
            if log is not None:
                log(f"{s.name}: replaying {len(held_out)} held-out episode(s)")
            rows += replay_source(s, ds, stride, seed, episodes_per_batch=episodes_per_batch)
            tensors[s.name] = check_a(s)
            if closed_loop is not None:
                loops[s.name] = closed_loop(s, ds.meta)
    groups = [g for s in sources for g in s.groups]
    report = {
        "schema": SCHEMA,
        "split": split,
        "stride": stride,
        "seed": seed,
        "data": {
            "path": str(Path(data)),
            "meta_sha256": sha256_file(Path(data) / "meta.json"),
            "episodes": len({r["episode"] for r in rows}),
            "windows": len({r["window"] for r in rows}),
        },
        "groups": {},
        "comparisons": comparisons(rows, _pairs(sources), seed),
        "versions": _versions(),
    }
    checks_a = {}
    for s in sources:  # what one source's groups share is computed once
        meta = read_meta(s.directory)
        shared = {
            "source": str(s.directory),
            "stage": s.spec.train.stage,
            "weights_sha256": sha256_file(s.directory / WEIGHTS),
            "spec": meta["spec"],
            "components": meta["components"],
        }
        for g in s.groups:
            mine = [r for r in rows if r["group"] == g]
            metrics = {m: float(np.mean([r[m] for r in mine])) for m in METRICS}
            report["groups"][g] = shared | {"windows": len(mine), "metrics": metrics}
            checks_a[g] = tensors[s.name]
    if closed_loop is not None:
        report["closed_loop"] = loops
        report["closed_loop_comparisons"] = closed_loop_comparisons(loops, sources[0].name, seed)
    checks_b = check_b(rows, spec.eval.batch_size)
    with atomic_dir(out) as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp / "sigma_eval_checkA.json").write_text(json.dumps(checks_a, indent=1) + "\n")
        (tmp / "sigma_eval_checkB.json").write_text(json.dumps(checks_b, indent=1) + "\n")
        (tmp / "windows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp / "report.md").write_text(markdown(report, checks_a))
        if plots:
            write_plots(tmp / "plots", rows, report, groups)
    return report


def check_held_out(source: Source, meta: dict[str, Any], episodes: set[int], data: Path) -> None:
    """Refuse to evaluate a policy on episodes of its own training set.

    Shards of the same source dataset (same fingerprint) must hold out every
    episode the policy trained on; another dataset (a transfer evaluation) is
    allowed.

    Raises:
        SigmaUserError: naming the overlapping episodes and the shards trained on.
    """
    trained = read_meta(source.directory).get("trained_on")
    if not trained or trained["fingerprint"] != meta["params"]["source"]["fingerprint"]:
        return
    seen = sorted(episodes & set(trained["train_episodes"]))
    if seen:
        raise SigmaUserError(
            f"{data}: episodes {seen[:8]} of this split were in {source.directory}'s training"
            f" split ({trained['shards']}, meta.json sha256 {trained['meta_sha256'][:12]}...):"
            " evaluate on the shards it was trained with, whose held-out split it never saw"
        )


def markdown(report: dict[str, Any], checks_a: dict[str, Any]) -> str:
    """``report.md``: groups by metric, the paired comparisons, CHECK A."""
    d = report["data"]
    lines = [
        f"# sigma eval: {d['path']} ({report['split']} split)",
        "",
        f"{d['episodes']} held-out episodes, {d['windows']} windows, replanning every"
        f" {report['stride']} frames with the memory carried; MSE per window, normalized"
        " units (`*_units`: the dataset's units, degrees and gripper 0-100).",
        "",
        "| group | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for g, info in report["groups"].items():
        m = info["metrics"]
        lines.append(f"| {g} | " + " | ".join(f"{m[k]:.4g}" for k in METRICS) + " |")
    lines += [
        "",
        "Differences `a − b` (negative: `a` is better), mean over episodes with a 95%"
        " paired bootstrap interval over episodes:",
        "",
        "| a | b | metric | a − b | 95% interval | episodes |",
        "|---|---|---|---|---|---|",
    ]
    for c in report["comparisons"]:
        diff = c["difference"]
        lines.append(
            f"| {c['a']} | {c['b']} | {c['metric']} | {diff['estimate']:+.4g} |"
            f" [{diff['low']:+.4g}, {diff['high']:+.4g}] | {c['episodes']} |"
        )
    lines += closed_loop_markdown(report)
    lines += [
        "",
        "CHECK A (telepathy-head tensors):",
        "",
        "| group | tensors | numel | mean | std | rms |",
        "|---|---|---|---|---|---|",
    ]
    for g, a in checks_a.items():
        stats = " | ".join(f"{a[k]:.6g}" for k in ("mean", "std", "rms"))
        lines.append(f"| {g} | {a['tensors']} | {a['numel']} | {stats} |")
    return "\n".join(lines) + "\n"


def closed_loop_markdown(report: dict[str, Any]) -> list[str]:
    """report.md's closed-loop section: stage rates with Wilson intervals, paired differences."""
    loops = report.get("closed_loop")
    if not loops:
        return []

    def rate(r: dict[str, float]) -> str:
        return f"{r['estimate']:.0%} [{r['low']:.0%}, {r['high']:.0%}]"

    lines = [
        "",
        "Closed loop in the simulator (the same seeds for every policy; 95% Wilson intervals):",
        "",
        "| policy | episodes | reached | grasped | lifted | success | wrong object"
        " | min tool-cube m | min cube-goal m | step p50 / p99 ms |",
        "|---|" + "---|" * 9,
    ]
    for name, c in loops.items():
        stages = c.get("stages") or {"success": c["success_rate"]}
        cells = [rate(stages[k]) if k in stages else "" for k in STAGES]
        lat = c["latency_ms"]
        lines.append(
            f"| {name} | {c['episodes']} | "
            + " | ".join(cells)
            + f" | {c['wrong_object_rate']:.0%} | {c.get('mean_min_tcp_to_obj', float('nan')):.3f}"
            f" | {c.get('mean_min_obj_to_goal', float('nan')):.3f}"
            f" | {lat['p50']:.1f} / {lat['p99']:.1f} |"
        )
    comps = report.get("closed_loop_comparisons") or []
    if comps:
        lines += [
            "",
            "Closed-loop differences `a − b`, paired by seed (95% bootstrap over seeds):",
            "",
            "| a | b | outcome | a − b | 95% interval | episodes |",
            "|---|---|---|---|---|---|",
        ]
        for c in comps:
            d = c["difference"]
            lines.append(
                f"| {c['a']} | {c['b']} | {c['metric']} | {d['estimate']:+.3g} |"
                f" [{d['low']:+.3g}, {d['high']:+.3g}] | {c['episodes']} |"
            )
    return lines


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or the install hint when it is missing.

    Raises:
        SigmaUserError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        if e.name is not None and not e.name.startswith("matplotlib"):
            raise  # matplotlib is there, one of its own dependencies is broken: show it
        raise SigmaUserError(
            "plots need matplotlib: pip install 'sigma-vla-core[eval]' (or pass --no-plots)"
        ) from e
    return plt


def write_plots(
    where: Path, rows: list[dict[str, Any]], report: dict[str, Any], groups: list[str]
) -> None:
    """Per-episode paired scatter (each group vs the first base), MSE by timescale with CIs."""
    plt = pyplot()
    where.mkdir(parents=True, exist_ok=True)
    reference = next((g for g in groups if g.endswith(":base")), groups[0])
    fig, ax = plt.subplots(figsize=(5, 5))
    ref = per_episode(rows, reference, "mse_trj")
    for g in groups:
        if g == reference:
            continue
        mine = per_episode(rows, g, "mse_trj")
        eps = sorted(set(ref) & set(mine))
        ax.scatter([ref[e] for e in eps], [mine[e] for e in eps], label=g, s=18)
    top = max(ref.values()) * 1.1 if ref else 1.0
    ax.plot([0, top], [0, top], color="grey", lw=0.8)
    ax.set_xlabel(f"{reference}: mse_trj per episode")
    ax.set_ylabel("group: mse_trj per episode")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(where / "paired_episodes.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(groups), 1)
    for i, g in enumerate(groups):
        means, errs = [], []
        for metric in ("mse_vec", "mse_chk", "mse_trj"):
            values = np.array(list(per_episode(rows, g, metric).values()))
            boot = np.random.default_rng(0).choice(values, (2000, len(values))).mean(1)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            means.append(values.mean())
            errs.append([values.mean() - lo, hi - values.mean()])
        xs = np.arange(3) + i * width
        ax.bar(xs, means, width, yerr=np.array(errs).T, label=g, capsize=3)
    ax.set_xticks(np.arange(3) + width * (len(groups) - 1) / 2, ["vector", "chunk", "trajectory"])
    ax.set_ylabel("MSE (normalized), 95% CI over episodes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(where / "mse_by_scale.png", dpi=120)
    plt.close(fig)
    loops = report.get("closed_loop")
    if loops:
        fig, ax = plt.subplots(figsize=(7, 4))
        width = 0.8 / len(loops)
        for i, (name, c) in enumerate(loops.items()):
            stages = c.get("stages") or {"success": c["success_rate"]}
            rates = [stages.get(k) for k in STAGES]
            est = [r["estimate"] if r else 0.0 for r in rates]
            errs = [
                [r["estimate"] - r["low"], r["high"] - r["estimate"]] if r else [0, 0]
                for r in rates
            ]
            xs = np.arange(len(STAGES)) + i * width
            ax.bar(xs, est, width, yerr=np.array(errs).T, label=name, capsize=3)
        ax.set_xticks(np.arange(len(STAGES)) + width * (len(loops) - 1) / 2, list(STAGES))
        ax.set_ylim(0, 1)
        ax.set_ylabel("rate over episodes, 95% Wilson interval")
        ax.set_title("closed loop in the simulator")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(where / "closed_loop.png", dpi=120)
        plt.close(fig)
