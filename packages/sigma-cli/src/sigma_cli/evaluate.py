"""``sigma eval``: offline replay of policies on held-out episodes, with paired intervals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sigma_cli.ui import err, out, user_errors


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
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json.")] = False,
) -> None:
    """Replay every policy on the held-out episodes: per-scale MSE, tau, sem_align, adapter scale.

    A stage-sigma policy gives three groups (NAME with the adapter, NAME:no-adapter,
    NAME:base = its frozen base); differences come with 95% paired bootstrap
    intervals over episodes. Writes report.json, report.md, the paper's
    sigma_eval_checkA.json / sigma_eval_checkB.json, windows.jsonl and plots/.
    """
    import torch

    from sigma_core.eval import evaluate as run_eval

    torch.set_num_threads(threads)
    err.print(f"replaying {len(policies)} polic{'y' if len(policies) == 1 else 'ies'} ...")
    report = run_eval(policies, data, out_dir, split=split, seed=seed, plots=plots)
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(title=f"{out_dir} ({report['split']} split)", title_justify="left")
    for col in ("group", "mse_vec", "mse_chk", "mse_trj", "tau_l2", "scale"):
        table.add_column(col, justify="left" if col == "group" else "right", overflow="fold")
    for g, info in report["groups"].items():
        m = info["metrics"]
        keys = ("mse_vec", "mse_chk", "mse_trj", "tau_l2", "adapter_scale")
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
    out.print(f"report: {out_dir / 'report.md'}")
