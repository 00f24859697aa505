"""``sigma train``: stage base or sigma on preprocessed shards, resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.progress import Progress, TextColumn

from sigma_cli.ui import err, out, progress_columns, user_errors
from sigma_core import SigmaUserError, load_spec


@user_errors
def train(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Run spec (YAML).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory.")],
    data: Annotated[
        Path | None, typer.Option(help="Shard directory (default: the spec's data.path).")
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps [train.steps].")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the newest checkpoint.")] = False,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = 50,
    val_every: Annotated[
        int,
        typer.Option(min=1, help="Steps between validations (val_L_act; costly on a CPU)."),
    ] = 50,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA, then MPS, then CPU) | cpu | cuda | mps.")
    ] = "auto",
    tensorboard: Annotated[
        bool, typer.Option(help="Also write TensorBoard scalars to RUN/tensorboard.")
    ] = False,
) -> None:
    """Train the spec's stage (base: the tau = 0 policy; sigma: telepathy + LoRA).

    Writes metrics.jsonl (one row per step, the paper's Table 1 columns) and
    atomic checkpoints; after a kill, the same command with --resume continues
    to the same weights as an uninterrupted run. Data-parallel on several GPUs
    (or CPU processes): accelerate launch -m sigma_cli train ... (or torchrun).
    """
    import torch

    from sigma_core.train import Trainer

    if threads:
        torch.set_num_threads(threads)
    spec = load_spec(spec_path)
    shards = data or (Path(spec.data.path) if spec.data.path else None)
    if shards is None:
        raise SigmaUserError("no data: pass --data SHARDS or set data.path in the spec")
    trainer = Trainer(
        spec,
        shards,
        out_dir,
        steps=steps,
        checkpoint_every=checkpoint_every,
        val_every=val_every,
        device=device,
        tensorboard=tensorboard,
    )
    columns = progress_columns(spec.train.stage, TextColumn("loss {task.fields[loss]}"))
    # one progress bar and one summary, from the main process only
    with Progress(*columns, console=err, disable=not trainer.main) as bar:
        task = bar.add_task("train", total=trainer.steps, loss="-")

        def on_step(row: dict[str, float]) -> None:
            bar.update(task, completed=row["step"], loss=f"{row['loss']:.4f}")

        result = trainer.train(resume=resume, on_step=on_step)
    summary = {
        "steps": result.steps,
        "checkpoint": str(result.checkpoint),
        "skipped_steps": result.skipped,
        **result.last,
    }
    if trainer.main:
        out.print_json(json.dumps(summary))


@user_errors
def dagger(
    base: Annotated[
        Path, typer.Argument(metavar="BASE", help="A camera-only base's policy directory.")
    ],
    data: Annotated[Path, typer.Option(help="The base's training shards (sigma data sim).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where round_K/ and dagger.json go.")],
    rounds: Annotated[int, typer.Option(min=1, help="Rounds in all (a rerun resumes).")] = 5,
    episodes: Annotated[int, typer.Option(min=1, help="Closed-loop episodes per round.")] = 100,
    steps: Annotated[int, typer.Option(min=1, help="Refit steps per round.")] = 1500,
    seed: Annotated[
        int,
        typer.Option(
            min=0,
            help="First closed-loop seed (round K: SEED + K*EPISODES on; sigma eval's"
            " are 10000 on).",
        ),
    ] = 20_000,
    max_seconds: Annotated[
        float, typer.Option(min=0.1, help="Simulated seconds per episode.")
    ] = 10.0,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 1,
    keep: Annotated[
        Literal["all", "before-contact"],
        typer.Option(
            help="The visited plans the refit learns from: all, or each episode's plans"
            " before the arm first moved the cube (the approach).",
        ),
    ] = "all",
) -> None:
    """Refit a camera-only base's scene estimator on the states its own policy visits.

    DAgger on the estimate (sigma_sim.dagger): each round runs the current policy in the
    SO-101 simulator on its own estimate, records the truth at every planning step,
    and refits vision and estimator on every round's states while stage base's
    objective keeps the action path on the demonstrations. The policy after round K is
    OUT/round_K (same spec: it never reads the truth at inference). A rerun of the same
    command resumes after the last saved round, to the same weights.
    """
    import torch

    from sigma_sim.dagger import estimator_dagger

    torch.set_num_threads(threads)

    def show(row: dict[str, object]) -> None:
        err.print(json.dumps(row))

    rows = estimator_dagger(
        base, data, out_dir, rounds, episodes, steps, seed, max_seconds, log=show, keep=keep
    )
    out.print_json(json.dumps({"policy": str(out_dir / f"round_{rounds - 1}"), "rounds": rows}))


@user_errors
def declutter(
    policy: Annotated[
        Path,
        typer.Argument(
            metavar="POLICY", help="A Sigma policy with vision.tau_stem (sigma train's RUN/policy)."
        ),
    ],
    data: Annotated[
        Path, typer.Option(help="Shards whose scenes have distractor cubes (the transfer data).")
    ],
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Where visited.safetensors, policy/ and declutter.json go."),
    ],
    episodes: Annotated[int, typer.Option(min=1, help="Closed-loop episodes visited.")] = 150,
    steps: Annotated[int, typer.Option(min=1, help="Fit steps (batch 32).")] = 1500,
    seed: Annotated[
        int,
        typer.Option(min=0, help="First closed-loop seed (sigma eval's are 10000 on)."),
    ] = 50_000,
    max_seconds: Annotated[
        float, typer.Option(min=0.1, help="Simulated seconds per episode.")
    ] = 10.0,
    also: Annotated[
        Path | None,
        typer.Option(
            help="Shards of scenes to visit too (e.g. the base's one-cube scenes, where the"
            " uncluttered render is the image itself), seeds SEED + 10000 on."
        ),
    ] = None,
    also_episodes: Annotated[int, typer.Option(min=1, help="Episodes visited in --also.")] = 100,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 1,
) -> None:
    """Teach a Sigma policy's tau pass to see the scene without the distractors.

    sigma_sim.declutter: the policy runs closed-loop in the data's scenes; at every
    planning step the simulator renders the same instant again without the distractor
    cubes. The tau pass's vision (vision.tau_stem) is then fitted to what the frozen
    base sees in those renders (L_declutter, sigma_core.train.declutter), while the
    instruction, through tau, says which cubes are distractors. The renders are used only
    here: OUT/policy has the same spec and reads nothing privileged. A rerun of the same
    command reads the saved visits back.
    """
    import torch

    from sigma_sim.declutter import declutter as run_declutter

    torch.set_num_threads(threads)
    record = run_declutter(
        policy,
        data,
        out_dir,
        episodes=episodes,
        steps=steps,
        seed=seed,
        max_seconds=max_seconds,
        also=also,
        also_episodes=also_episodes,
        log=err.print,
    )
    out.print_json(json.dumps({"policy": str(out_dir / "policy")} | record))
