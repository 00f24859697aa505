"""``sigma data sim`` and ``sigma preprocess``: make and window datasets.

Heavy imports (torch, LeRobot, MuJoCo) happen inside the commands, so the rest
of the CLI stays fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import Progress
from rich.table import Table

from sigma_cli.ui import err, out, progress_columns, user_errors
from sigma_core import Dims, SigmaUserError, get_registry, load_spec

data_app = typer.Typer(help="Make datasets (simulated demonstrations).", no_args_is_help=True)


@contextmanager
def progress_bar(total: int, what: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr with ETA; yields ``advance(n)``."""
    with Progress(*progress_columns(what), console=err, transient=False) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n=1: bar.advance(task, n)


def _dims(spec: Path | None) -> Dims:
    """The spec's ``model.dims`` (the defaults without ``--spec``)."""
    return Dims() if spec is None else load_spec(spec).model.dims


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: yaml.safe_load(value)}``.

    Raises:
        SigmaUserError: an item without ``=`` or with a value that is not YAML.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SigmaUserError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise SigmaUserError(f"--set {item!r}: the value is not YAML ({exc})") from exc
    return out


def validation_message(exc: ValidationError) -> str:
    """One line per pydantic error: ``field: message``."""
    return "; ".join(
        f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


@data_app.command("sim")
@user_errors
def sim(
    out_dir: Annotated[Path, typer.Option("--out", help="Dataset root to write.")],
    episodes: Annotated[int, typer.Option(min=1, help="Successful episodes to record.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same dataset.")] = 0,
    image_size: Annotated[int, typer.Option(min=16, help="Camera image side.")] = 96,
    fps: Annotated[int, typer.Option(min=1, help="Recording frame rate.")] = 30,
    distractors: Annotated[int, typer.Option(min=0, help="Extra cubes of other colours.")] = 0,
    source: Annotated[str, typer.Option(help="data_source component.")] = "so101-pickplace",
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Any other field of the source's config, VALUE in YAML, e.g. "
            "--set cube_colors=[red] --set spawn_max_radius=0.12 (repeatable).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Record scripted SO-101 pick-and-place demonstrations as a LeRobot v3 dataset.

    An interrupted run keeps the episodes saved so far; run the same command
    again to continue.
    """
    info = get_registry().get("data_source", source)
    params = {"image_size": image_size, "fps": fps, "distractors": distractors}
    params |= parse_settings(settings or [])
    try:
        config = info.config_class(**params)
    except ValidationError as exc:
        raise SigmaUserError(f"data source {source!r}: {validation_message(exc)}") from exc
    data_source = info.load()(config)
    summary = data_source.write(out_dir, episodes, seed=seed)
    if as_json:
        out.print_json(json.dumps(summary, default=str))
        return
    table = Table(title=f"{out_dir}", title_justify="left", show_header=False)
    for k, v in summary.items():
        text = f"{v:.0%}" if k == "yield" else f"{v:.3g}" if isinstance(v, float) else str(v)
        table.add_row(k, text)
    out.print(table)


@user_errors
def preprocess(
    out_dir: Annotated[Path, typer.Option("--out", help="Shard directory to write.")],
    dataset: Annotated[
        str | None,
        typer.Option(help="LeRobot v3 dataset: a local root, or a hub repo id when online."),
    ] = None,
    from_sigma_shards: Annotated[
        Path | None, typer.Option(help="Import the paper's shard_*.pt files from this directory.")
    ] = None,
    spec: Annotated[
        Path | None, typer.Option(help="Spec whose dims (cameras, sizes) to use.")
    ] = None,
    horizon: Annotated[
        int | None, typer.Option(help="Window length T; default from the spec.")
    ] = None,
    chunk: Annotated[
        int | None,
        typer.Option(help="Chunk horizon H_c; default the spec's (the paper's shards: theirs)."),
    ] = None,
    stride: Annotated[int, typer.Option(min=1, help="Window stride.")] = 1,
    min_action_norm: Annotated[
        float, typer.Option(help="Drop windows whose avg_action_l2 is below this.")
    ] = 0.1,
    l2_of: Annotated[
        str, typer.Option(help="avg_action_l2 of per-step action 'delta' or the 'action'.")
    ] = "delta",
    camera_map: Annotated[
        list[str] | None,
        typer.Option(help="Spec camera to dataset key, e.g. overhead=observation.images.up."),
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Stored image side; default from the spec.")
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="Episodes held out for validation.")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Episodes held out for test.")] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed of the episode split.")] = 0,
    shard_frames: Annotated[int, typer.Option(min=1, help="Frames per shard.")] = 2048,
    revision: Annotated[str | None, typer.Option(help="Hub revision.")] = None,
    video_backend: Annotated[str | None, typer.Option(help="pyav or torchcodec.")] = None,
    base_policy: Annotated[
        Path | None,
        typer.Option(
            help="Spec whose base_policy (e.g. pi05) to run once per window; training then "
            "reads a_base from the shards instead of running it."
        ),
    ] = None,
    base_batch_size: Annotated[int, typer.Option(min=1, help="Windows per base-policy call.")] = 8,
    device: Annotated[str, typer.Option(help="Device of the base policy.")] = "cpu",
    overwrite_base_actions: Annotated[
        bool, typer.Option(help="Replace base actions of another base policy.")
    ] = False,
    stats_from: Annotated[
        Path | None,
        typer.Option(
            help="A trained policy whose saved statistics normalize these shards (for a"
            " stage that builds on it as a frozen base); default: this data's own."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print meta.json's summary as JSON.")
    ] = False,
) -> None:
    """Cut a LeRobot dataset (or the paper's shards) into windowed safetensors shards.

    Frames are stored once with a window index; static and NaN windows are
    dropped and counted; the split is by episode. A killed run resumes when
    rerun with the same arguments; a rerun on complete output does nothing.
    With --base-policy, the spec's base policy then computes a_base for every
    window (resumable the same way) into base_actions/ next to the shards.
    """
    if (dataset is None) == (from_sigma_shards is None):
        raise SigmaUserError("give exactly one of --dataset and --from-sigma-shards")
    if stats_from is not None and from_sigma_shards is not None:
        raise SigmaUserError("--stats-from applies to --dataset")
    from sigma_core.data import PreprocessOptions

    adopted = None if stats_from is None else saved_stats(stats_from)

    dims = _dims(spec or base_policy)
    if from_sigma_shards is not None:
        from sigma_core.data import paper_cameras, paper_chunk

        if chunk is None:
            chunk = paper_chunk(from_sigma_shards)  # the paper's shards carry their own H_c
        if spec is None and base_policy is None:  # nor is their camera count the default's
            n = paper_cameras(from_sigma_shards, horizon or dims.horizon)
            names = dims.cameras[:n] if n <= len(dims.cameras) else [f"camera{i}" for i in range(n)]
            dims = dims.model_copy(update={"cameras": names})
    try:
        opts = PreprocessOptions(
            cameras=dims.cameras,
            image_size=image_size or dims.image_size,
            horizon=horizon or dims.horizon,
            chunk=chunk or dims.chunk_horizon,
            stride=stride,
            min_action_norm=min_action_norm,
            l2_of=l2_of,  # type: ignore[arg-type]
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            shard_frames=shard_frames,
        )
    except ValueError as e:
        raise SigmaUserError(f"bad option: {e}") from e
    start = time.perf_counter()
    if from_sigma_shards is not None:
        from sigma_core.data import PaperShards, import_paper_shards

        n = len(PaperShards(from_sigma_shards, opts, dims.action_dim, dims.state_dim).files)
        with progress_bar(n, "import") as advance:
            meta = import_paper_shards(
                from_sigma_shards,
                out_dir,
                opts,
                action_dim=dims.action_dim,
                state_dim=dims.state_dim,
                progress=advance,
            )
    else:
        from sigma_core.data import preprocess as run_preprocess
        from sigma_lerobot.dataset import LeRobotSource, parse_camera_map

        source = LeRobotSource(
            str(dataset), dims.cameras, parse_camera_map(camera_map), revision, video_backend
        )
        with progress_bar(len(source.episode_lengths()), "episodes") as advance:
            meta = run_preprocess(source, out_dir, opts, dims=dims, progress=advance, stats=adopted)
    seconds = time.perf_counter() - start
    base = None
    if base_policy is not None:
        base = precompute(
            out_dir, base_policy, meta, base_batch_size, device, overwrite_base_actions
        )
    _report(out_dir, meta, seconds, as_json, base)


def saved_stats(policy_dir: Path) -> tuple[str, dict[str, Any]]:
    """``(path, statistics)`` saved with a trained policy (``sigma.json``'s ``stats``).

    Raises:
        SigmaUserError: not a saved policy, or one saved without statistics.
    """
    path = policy_dir / "sigma.json"
    try:
        stats = json.loads(path.read_text()).get("stats")
    except FileNotFoundError:
        raise SigmaUserError(f"{policy_dir}: not a saved policy (no sigma.json)") from None
    except (json.JSONDecodeError, AttributeError) as e:
        raise SigmaUserError(f"{path}: not a policy's sigma.json ({e})") from e
    if not stats:
        raise SigmaUserError(
            f"{policy_dir}: the policy carries no statistics (saved before they travelled"
            " with policies); preprocess without --stats-from"
        )
    return str(policy_dir), stats


def precompute(
    out_dir: Path,
    spec_path: Path,
    meta: dict[str, Any],
    batch_size: int,
    device: str,
    overwrite: bool,
) -> dict[str, Any]:
    """Run the spec's base policy over every window of ``out_dir``; a summary."""
    import torch

    from sigma_core import build_component, sharing
    from sigma_core.data import precompute_base_actions

    spec = load_spec(spec_path)
    start = time.perf_counter()
    torch.manual_seed(spec.train.seed)
    with sharing():
        base = build_component("base_policy", spec.base_policy, spec.model.dims)
    base.set_data_stats(meta["stats"])
    base.to(device).eval()
    windows = meta["counts"]["windows_kept"]
    with progress_bar(windows, "base actions") as advance:
        record = precompute_base_actions(
            out_dir,
            base,
            spec.base_policy.model_dump(mode="json"),
            getattr(base, "pretrained_sources", {}),
            frame_history=spec.model.dims.frame_history,
            batch_size=batch_size,
            device=device,
            overwrite=overwrite,
            progress=advance,
        )
    seconds = time.perf_counter() - start
    return {
        "base_policy": spec.base_policy.type,
        "windows": windows,
        "files": len(record["files"]),
        "seconds": round(seconds, 2),
    }


def _report(
    out_dir: Path,
    meta: dict[str, Any],
    seconds: float,
    as_json: bool,
    base: dict[str, Any] | None = None,
) -> None:
    c = meta["counts"]
    summary = {
        "out": str(out_dir),
        "up_to_date": bool(meta.get("up_to_date")),
        "seconds": round(seconds, 2),
        **{k: v for k, v in c.items() if k != "short_episodes"},
        "short_episodes": c["short_episodes"],
        "split": {k: meta["split"][k]["windows"] for k in ("train", "val", "test")},
        "split_episodes": {k: len(meta["split"][k]["episodes"]) for k in ("train", "val", "test")},
        "shards": len(meta["shards"]),
        "bytes": sum(s["bytes"] for s in meta["shards"]),
    } | ({"base_actions": base} if base else {})
    if as_json:
        out.print_json(json.dumps(summary))
        return
    if summary["up_to_date"]:
        out.print(f"{out_dir}: already complete and intact; nothing to do")
    table = Table(title=f"{out_dir}", title_justify="left", show_header=False)
    rows = [
        ("episodes", f"{c['episodes_kept']} kept of {c['episodes_in']}"),
        ("windows", f"{c['windows_kept']:,} kept of {c['candidates']:,}"),
        ("dropped static", f"{c['dropped_static']:,}"),
        ("dropped NaN/inf", f"{c['dropped_nonfinite']:,}"),
        ("short episodes", ", ".join(c["short_episodes"]) or "none"),
        (
            "split (windows)",
            " / ".join(
                f"{k} {v:,} ({summary['split_episodes'][k]} ep)"
                for k, v in summary["split"].items()
            ),
        ),
        (
            "frames stored",
            f"{c['frames_stored']:,} in {summary['shards']} shards, "
            f"{summary['bytes'] / 2**20:.1f} MiB",
        ),
        ("time", f"{seconds:.1f} s"),
    ]
    if base:
        rows.append(
            (
                "base actions",
                f"{base['base_policy']} over {base['windows']:,} windows"
                f" in {base['seconds']:.1f} s",
            )
        )
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
