"""``sigma eval``: offline replay of policies on held-out episodes, with paired intervals."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sigma_cli.ui import err, out, stdout_to_stderr, user_errors
from sigma_core import SigmaUserError

#: ``sigma_core.eval.EPISODES_PER_BATCH`` (not imported: ``sigma --help`` imports no torch)
EPISODES_PER_BATCH = 8


@user_errors
def evaluate(
    policies: Annotated[
        list[Path], typer.Argument(metavar="RUN_OR_POLICY...", help="Run dirs or saved policies.")
    ],
    data: Annotated[Path, typer.Option(help="Preprocessed shards (the held-out split is used).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Report directory to write.")],
    split: Annotated[
        str | None, typer.Option(help="val or test; default the first policy's eval.split.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler noise and the bootstrap.")] = 0,
    sim: Annotated[
        int, typer.Option(min=0, help="Closed-loop episodes per policy in the SO-101 simulator.")
    ] = 0,
    distractors: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Closed loop: cubes of other colours on the table (default: as recorded).",
        ),
    ] = None,
    max_seconds: Annotated[
        float, typer.Option(help="Closed loop: an episode's time limit.")
    ] = 15.0,
    save_video: Annotated[
        bool,
        typer.Option(
            help="Closed loop: mp4 of the overhead camera, first 3 episodes, in OUT.closed-loop/."
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Closed loop: episodes run in this many processes at once."),
    ] = 1,
    n_action_steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Closed loop: actions executed per plan before replanning (1..H_c; default "
            "the spec's replanning stride).",
        ),
    ] = None,
    instruction_steps: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Closed loop: show the instruction on the first K control steps only, then"
            " the empty text (does the memory carry the intent?). Default: always.",
        ),
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 1,
    device: Annotated[
        str,
        typer.Option(help="auto (CUDA when torch sees one, else CPU) | cpu | cuda (or cuda:N)."),
    ] = "auto",
    episodes_per_batch: Annotated[
        int,
        typer.Option(
            min=1, help="Offline replay: episodes side by side in one forward (same results)."
        ),
    ] = EPISODES_PER_BATCH,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print report.json on stdout (and nothing else; progress on stderr)."
        ),
    ] = False,
) -> None:
    """Replay every policy on the held-out episodes: per-scale MSE, tau, sem_align, adapter scale.

    A stage-sigma policy gives three groups (NAME with the adapter, NAME:no-adapter,
    NAME:base = its frozen base); differences come with 95% paired bootstrap
    intervals over episodes. Writes report.json, report.md, the paper's
    sigma_eval_checkA.json / sigma_eval_checkB.json, windows.jsonl and plots/.

    With --sim, each finished episode is journaled in OUT.closed-loop/POLICY.jsonl
    (next to the report directory, with --save-video's videos/); a killed run
    repeated with the same --out reads those episodes back and runs only the rest.

    The policies are built one at a time onto --device (replayed, measured, run in
    closed loop, then freed), so several large ones need the memory of one.
    """
    import torch

    from sigma_core.eval import evaluate as run_eval
    from sigma_core.eval import resolve_device

    where = resolve_device(device)  # a bad or unavailable device fails before any load
    torch.set_num_threads(threads)
    closed_loop = None
    if sim:
        closed_loop = simulator(
            sim,
            seed,
            distractors,
            max_seconds,
            journal_dir(out_dir) if save_video else None,
            workers=workers,
            journal_dir=journal_dir(out_dir),
            n_action_steps=n_action_steps,
            instruction_steps=instruction_steps,
        )
    err.print(f"evaluating {len(policies)} polic{'y' if len(policies) == 1 else 'ies'} on {where}")
    with stdout_to_stderr():  # library prints and worker processes too: stdout is the report's
        report = run_eval(
            policies,
            data,
            out_dir,
            split=split,
            seed=seed,
            plots=plots,
            closed_loop=closed_loop,
            device=where,
            episodes_per_batch=episodes_per_batch,
            log=err.print,
        )
    if as_json:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
        return
    table = Table(title=f"{out_dir} ({report['split']} split)", title_justify="left")
    for col in ("group", "mse_vec", "mse_chk", "mse_trj", "tau_l2", "scale", "image_reliance"):
        table.add_column(col, justify="left" if col == "group" else "right", overflow="fold")
    for g, info in report["groups"].items():
        m = info["metrics"]
        keys = ("mse_vec", "mse_chk", "mse_trj", "tau_l2", "adapter_scale", "image_reliance")
        table.add_row(g, *(f"{m[k]:.4g}" for k in keys))
    out.print(table)
    diffs = Table(title="a − b, 95% paired bootstrap over episodes", title_justify="left")
    for col in ("a", "b", "metric", "a − b", "interval"):
        diffs.add_column(col, overflow="fold")
    for c in report["comparisons"]:
        if c["metric"].endswith("_units"):
            continue
        d = c["difference"]
        diffs.add_row(
            c["a"],
            c["b"],
            c["metric"],
            f"{d['estimate']:+.4g}",
            f"[{d['low']:+.4g}, {d['high']:+.4g}]",
        )
    out.print(diffs)
    if "closed_loop" in report:
        out.print(closed_loop_table(report["closed_loop"]))
        if report.get("closed_loop_comparisons"):
            out.print(closed_loop_diffs(report["closed_loop_comparisons"]))
    out.print(f"report: {out_dir / 'report.md'}")


def _rate(r: dict[str, float]) -> str:
    return f"{r['estimate']:.0%} [{r['low']:.0%}, {r['high']:.0%}]"


def closed_loop_table(loops: dict[str, dict[str, Any]]) -> Table:
    """Per policy: episodes, progress stages and success with 95% Wilson intervals, latency."""
    table = Table(
        title="closed loop in the simulator (held-out seeds, 95% Wilson)", title_justify="left"
    )
    from sigma_core.eval import STAGES

    for col in ("policy", "episodes", *STAGES, "wrong object", "step p50 / p99 ms"):
        table.add_column(col, overflow="fold")
    for name, c in loops.items():
        # a report written before the progress stages existed has the success rate only
        stages = c.get("stages") or {"success": c["success_rate"]}
        lat = c["latency_ms"]
        table.add_row(
            name,
            str(c["episodes"]),
            *(_rate(stages[k]) if k in stages else "" for k in STAGES),
            f"{c['wrong_object_rate']:.0%}",
            f"{lat['p50']:.1f} / {lat['p99']:.1f}",
        )
    return table


def closed_loop_diffs(comparisons: list[dict[str, Any]]) -> Table:
    """``a − b`` of the rates and closest approaches, paired by simulator seed."""
    table = Table(title="closed loop a − b, paired by seed [95% bootstrap]", title_justify="left")
    for col in ("a", "b", "outcome", "a − b [95%]"):
        table.add_column(col, overflow="fold")
    for c in comparisons:
        d = c["difference"]
        table.add_row(
            c["a"],
            c["b"],
            c["metric"],
            f"{d['estimate']:+.3g} [{d['low']:+.3g}, {d['high']:+.3g}]",
        )
    return table


def journal_dir(out_dir: Path) -> Path:
    """Where ``sigma eval --sim`` journals episodes: ``<out>.closed-loop/`` beside ``<out>``.

    Not inside ``<out>``: the report directory is replaced as a whole when the
    report is written, and the journal (and ``--save-video``'s ``videos/``, which
    inside ``<out>`` were deleted by that swap) must outlive both a killed run and
    a finished one (a later run with more episodes reuses the first ones).
    """
    return out_dir.with_name(f"{out_dir.name}.closed-loop")


def simulator(
    episodes: int,
    seed: int,
    distractors: int | None,
    max_seconds: float,
    video_root: Path | None,
    *,
    workers: int = 1,
    journal_dir: Path | None = None,
    n_action_steps: int | None = None,
    instruction_steps: int | None = None,
) -> Callable[[Any, dict[str, Any]], dict[str, Any]]:
    """The closed-loop evaluator of ``sigma eval --sim``, from the SO-101 simulator package.

    ``workers`` processes run episodes; with ``journal_dir`` each policy's finished
    episodes go to ``journal_dir/<policy name>.jsonl`` and are read back on a rerun;
    ``n_action_steps`` overrides each policy's replanning stride; with
    ``instruction_steps`` the instruction is shown on the first K control steps only
    (recorded in each policy's summary).
    """
    try:
        from sigma_sim.rollout import rollout, summarize
    except ImportError:
        raise SigmaUserError(
            "--sim needs the SO-101 simulator: pip install 'sigma-vla-cli[default]'"
            " (or sigma-vla-sim)"
        ) from None

    def run(source: Any, meta: dict[str, Any]) -> dict[str, Any]:
        err.print(f"closed loop: {source.name}, {episodes} episodes ...")
        videos = video_root / "videos" / source.name if video_root else None
        results = rollout(
            source.policy,
            meta,
            episodes,
            seed=10_000 + seed,
            distractors=distractors,
            max_seconds=max_seconds,
            video_dir=videos,
            workers=workers,
            journal=journal_dir / f"{source.name}.jsonl" if journal_dir else None,
            n_action_steps=n_action_steps,
            instruction_steps=instruction_steps,
        )
        summary = summarize(results)
        if instruction_steps is not None:
            summary["instruction_steps"] = instruction_steps
        return summary

    return run
