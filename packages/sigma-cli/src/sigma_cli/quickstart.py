"""``sigma quickstart``: the embedded default end to end, offline, on a CPU.

Stages, each skipped when its output is already complete (a rerun resumes):

1. ``data/``    scripted SO-101 demonstrations in MuJoCo (``data_source: so101-pickplace``)
2. ``shards/``  ``sigma preprocess`` of them (held-out val and test episodes)
3. ``runs/base``       stage base: the CPU stand-in for π0.5, then frozen
4. ``runs/sigma``      stage sigma on that base: telepathy pathway + LoRA (memory over runs)
5. ``runs/lora-only``  the control: the same budget with the pathway off (LoRA + residual heads)
6. ``eval/``    ``sigma eval`` of all three on the held-out test episodes, and in
   closed loop in the simulator (seeds disjoint from the demonstrations')

The specs are the embedded defaults (``SigmaSpec()``) with the stage settings of
``configs/base-tiny.yaml``, ``configs/sigma-tiny.yaml`` and
``configs/control-lora-only.yaml``; ``--smoke`` shrinks everything to about a
minute (CI runs it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sigma_cli.evaluate import closed_loop_diffs, closed_loop_table, simulator
from sigma_cli.ui import err, out, user_errors
from sigma_core import SigmaSpec, get_registry, validate_spec


@dataclass(frozen=True)
class Size:
    """How big a quickstart is."""

    episodes: int
    image_size: int
    base_steps: int
    sigma_steps: int
    batch_size: int
    run_length: int
    split: float  # val and test fraction each
    sim_episodes: int  # closed-loop episodes per policy
    sim_seconds: float  # their time limit


FULL = Size(
    episodes=50,
    image_size=96,
    base_steps=300,
    sigma_steps=300,
    batch_size=8,
    run_length=4,
    split=0.1,
    sim_episodes=8,
    sim_seconds=10.0,
)
SMOKE = Size(
    episodes=4,
    image_size=32,
    base_steps=4,
    sigma_steps=4,
    batch_size=2,
    run_length=2,
    split=0.25,
    sim_episodes=1,
    sim_seconds=1.0,
)


def specs(size: Size, root: Path) -> dict[str, SigmaSpec]:
    """The three runs' specs: base, sigma on it, and the LoRA-only control on it."""
    dims = {"image_size": size.image_size}
    data = {"batch_size": size.batch_size}
    base = {
        "model": {"dims": dims},
        "base_policy": {"type": "internal"},
        "data": data,
        "train": {"stage": "base", "steps": size.base_steps, "lr": 1e-3, "warmup_steps": 20},
    }
    on_base = {"type": "checkpoint", "path": str(root / "runs" / "base" / "policy")}
    sigma = {
        "model": {"dims": dims},
        "base_policy": on_base,
        "data": data | {"run_length": size.run_length},
        "train": {"stage": "sigma", "steps": size.sigma_steps, "lr": 3e-4, "warmup_steps": 20},
    }
    zero = {"start": 0.0, "target": 0.0}
    lora = {
        **sigma,
        "model": {"dims": dims, "telepathy": False, "memory": {"type": "none"}},
        "train": sigma["train"] | {"losses": {"w_sem": zero, "w_intent": zero, "w_tau": zero}},
    }
    registry = get_registry()
    raw = {"base": base, "sigma": sigma, "lora-only": lora}
    return {
        name: validate_spec(r, registry, source=f"quickstart:{name}") for name, r in raw.items()
    }


def _stage(name: str, done: bool, timings: dict[str, float]) -> float | None:
    if done:
        err.print(f"[dim]{name}: already complete, skipped[/]")
        timings[name] = 0.0
        return None
    err.print(f"[bold]{name}[/] ...")
    return time.perf_counter()


def run_quickstart(root: Path, size: Size, seed: int = 0) -> dict[str, Any]:
    """Run (or resume) every stage under ``root``; return the summary written to quickstart.json."""
    import torch

    from sigma_core.data import PreprocessOptions, preprocess
    from sigma_core.eval import evaluate
    from sigma_core.train import Trainer
    from sigma_lerobot.dataset import LeRobotSource

    torch.set_num_threads(1)  # 2 busy cores: one thread is the fast setting (FACTS)
    timings: dict[str, float] = {}
    data, shards = root / "data", root / "shards"
    registry = get_registry()
    # the data source resumes by itself: with the episodes already there it does nothing
    err.print("[bold]demonstrations[/] ...")
    t = time.perf_counter()
    info = registry.get("data_source", "so101-pickplace")
    source = info.load()(info.config_class(image_size=size.image_size))
    demo = source.write(data, size.episodes, seed=seed, progress=True)
    timings["demonstrations"] = time.perf_counter() - t
    run_specs = specs(size, root)
    dims = run_specs["base"].model.dims
    if (t := _stage("preprocess", (shards / "meta.json").is_file(), timings)) is not None:
        opts = PreprocessOptions(
            cameras=list(dims.cameras),
            image_size=dims.image_size,
            horizon=dims.horizon,
            chunk=dims.chunk_horizon,
            val_fraction=size.split,
            test_fraction=size.split,
            split_seed=seed,
        )
        lerobot = LeRobotSource(str(data), list(dims.cameras), {}, None, None)
        preprocess(lerobot, shards, opts, dims=dims)
        timings["preprocess"] = time.perf_counter() - t
    for name in ("base", "sigma", "lora-only"):
        run = root / "runs" / name
        if (t := _stage(f"train {name}", (run / "policy").is_dir(), timings)) is not None:
            trainer = Trainer(run_specs[name], shards, run, checkpoint_every=50)
            trainer.train(resume=(run / "last").exists())
            timings[f"train {name}"] = time.perf_counter() - t
    report_dir = root / "eval"
    if (t := _stage("eval", (report_dir / "report.json").is_file(), timings)) is not None:
        runs = [root / "runs" / n for n in ("sigma", "lora-only", "base")]
        loop = simulator(size.sim_episodes, seed, 0, size.sim_seconds, None)
        evaluate(runs, shards, report_dir, split="test", seed=seed, closed_loop=loop)
        timings["eval"] = time.perf_counter() - t
    report = json.loads((report_dir / "report.json").read_text())
    summary = {
        "root": str(root),
        "size": size.__dict__,
        "seconds": timings,
        "demonstrations": {k: demo[k] for k in ("episodes", "frames", "yield") if k in demo},
        "report": str(report_dir / "report.md"),
        "groups": {g: v["metrics"] for g, v in report["groups"].items()},
        "closed_loop": report.get("closed_loop", {}),
        "closed_loop_comparisons": report.get("closed_loop_comparisons", []),
        "comparisons": [
            c
            for c in report["comparisons"]
            if (c["a"], c["b"])
            in {
                ("sigma", "sigma:base"),
                ("lora-only", "lora-only:base"),
                ("lora-only", "sigma"),
                ("base", "sigma"),
            }
        ],
    }
    (root / "quickstart.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def print_table(summary: dict[str, Any]) -> None:
    """The comparison: base vs LoRA-only vs Sigma on held-out episodes, with intervals."""
    table = Table(title="held-out test episodes: MSE per window (normalized)", title_justify="left")
    for col in ("group", "vector", "chunk", "trajectory", "trajectory (deg²)"):
        table.add_column(col, justify="left" if col == "group" else "right")
    groups = summary["groups"]
    for g in ("base", "lora-only", "sigma", "sigma:no-adapter"):
        if g in groups:
            m = groups[g]
            table.add_row(
                g, *(f"{m[k]:.4g}" for k in ("mse_vec", "mse_chk", "mse_trj", "mse_trj_units"))
            )
    out.print(table)
    diffs = Table(title="a − b, mean over episodes [95% paired bootstrap]", title_justify="left")
    for col in ("a", "b", "vector", "chunk", "trajectory"):
        diffs.add_column(col)
    pairs: dict[tuple[str, str], dict[str, str]] = {}
    for c in summary["comparisons"]:
        if c["metric"] in ("mse_vec", "mse_chk", "mse_trj"):
            d = c["difference"]
            text = f"{d['estimate']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
            pairs.setdefault((c["a"], c["b"]), {})[c["metric"]] = text
    for (a, b), cells in pairs.items():
        diffs.add_row(
            a, b, cells.get("mse_vec", ""), cells.get("mse_chk", ""), cells.get("mse_trj", "")
        )
    out.print(diffs)
    out.print(closed_loop_table(summary["closed_loop"]))
    loop_diffs = [
        c
        for c in summary.get("closed_loop_comparisons", [])
        if c["metric"] in ("success", "lifted", "min_tcp_to_obj")
    ]
    if loop_diffs:
        out.print(closed_loop_diffs(loop_diffs))
    seconds = sum(summary["seconds"].values())
    out.print(f"{seconds:.0f} s; report: {summary['report']}; runs under {summary['root']}/runs")


@user_errors
def quickstart(
    out_dir: Annotated[Path, typer.Option("--out", help="Where everything goes.")] = Path(
        "quickstart"
    ),
    smoke: Annotated[bool, typer.Option(help="A one-minute run of every stage (CI).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of demonstrations, split and training.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the embedded default end to end: demos, preprocess, base, Sigma, LoRA-only, eval.

    No hub, no GPU: the SO-101 simulator makes the data, a small base stands in for
    π0.5. A rerun skips every finished stage (and resumes an interrupted one).
    """
    summary = run_quickstart(out_dir, SMOKE if smoke else FULL, seed)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    print_table(summary)
