"""``sigma export`` and ``sigma push``: a trained run as a hub-ready model folder.

The folder (written under a temporary name and renamed)::

    model.safetensors, sigma.json    what SigmaPolicy.from_pretrained(DIR) loads
    config.json                      LeRobot's view (type sigma): what
                                     get_policy_class("sigma").from_pretrained(DIR) loads,
                                     with the normalisation statistics it was trained with
    policy_preprocessor.json, ...    LeRobot's processors (when lerobot_policy_sigma is
                                     installed): make_pre_post_processors(config,
                                     pretrained_path=DIR) needs no dataset
    adapter_model.safetensors,       the backbone's LoRA in PEFT's own format (from the
    adapter_config.json              run's newest checkpoint), when the run has one
    spec.yaml                        the resolved run spec
    base/                            the frozen base of a stage-sigma run (a Sigma
                                     checkpoint or LeRobot policy at base_policy.path),
                                     unless --base-model names it (a hub id or path)
    README.md                        the model card (hub metadata, components, training,
                                     pretrained weights with sha256, evaluation, citations)
    eval/report.json, report.md      the evaluation, when one is given

The frozen base is bundled so that the folder loads from any directory and on
any machine; sigma.json and config.json record ``"bundled": {"base_policy.path":
"base"}`` and every loader resolves it against the folder it loads
(:func:`sigma_core.make_portable`). Other pretrained weights (π0.5 by hub id, a
backbone) are not copied: the card and sigma.json name them with their sha256.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from sigma_cli.ui import out, user_errors
from sigma_core import SigmaUserError, __version__, atomic_dir

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
CITATIONS = """```bibtex
@article{sigma2025,
  title   = {Sigma: The Key for Vision-Language-Action Models toward Telepathic Alignment},
  journal = {arXiv preprint arXiv:2512.00783},
  year    = {2025}
}
@article{pi05,
  title   = {$\\pi_{0.5}$: a Vision-Language-Action Model with Open-World Generalization},
  author  = {{Physical Intelligence}},
  journal = {arXiv preprint arXiv:2504.16054},
  year    = {2025}
}
```"""


def policy_dir(run: Path) -> Path:
    """The saved policy of ``run``: RUN/policy (a training run) or RUN itself."""
    for candidate in (run / "policy", run):
        if (candidate / "sigma.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    raise SigmaUserError(
        f"{run}: neither a training run with policy/ nor a saved policy (sigma.json + "
        "model.safetensors); train to the end first"
    )


def newest_checkpoint(run: Path) -> Path | None:
    """RUN/checkpoints/<the step named by RUN/last>, when the run wrote one."""
    last = run / "last"
    if last.is_file():
        step = run / "checkpoints" / last.read_text().strip()
        if step.is_dir():
            return step
    return None


def export_run(
    run: Path, out_dir: Path, report: Path | None = None, base_model: str | None = None
) -> Path:
    """Write the hub-ready folder of ``run`` to ``out_dir`` (see the module docstring)."""
    from sigma_core import make_portable  # loads the model package (torch): not at import

    policy = policy_dir(run)
    meta = json.loads((policy / "sigma.json").read_text())
    report_data = None
    if report is not None:
        path = report / "report.json" if report.is_dir() else report
        if not path.is_file():
            raise SigmaUserError(f"--report {report}: no report.json (run sigma eval first)")
        report_data = json.loads(path.read_text())
    checkpoint = newest_checkpoint(run)
    with atomic_dir(out_dir) as tmp:
        meta = make_portable(meta, tmp, policy, base_model)
        shutil.copy2(policy / "model.safetensors", tmp / "model.safetensors")
        (tmp / "sigma.json").write_text(json.dumps(meta, indent=2) + "\n")
        if checkpoint is not None and all((checkpoint / f).is_file() for f in ADAPTER_FILES):
            for name in ADAPTER_FILES:
                shutil.copy2(checkpoint / name, tmp / name)
        (tmp / "spec.yaml").write_text(yaml.safe_dump(meta["spec"], sort_keys=False))
        config = lerobot_config(meta["spec"], meta.get("bundled"), meta.get("stats"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if meta.get("stats"):
            write_lerobot_processors(tmp)
        if report_data is not None:
            (tmp / "eval").mkdir()
            (tmp / "eval" / "report.json").write_text(json.dumps(report_data, indent=1) + "\n")
            report_md = path.with_name("report.md")
            if report_md.is_file():
                shutil.copy2(report_md, tmp / "eval" / "report.md")
        (tmp / "README.md").write_text(model_card(meta, report_data, base_model))
    return out_dir


def write_lerobot_processors(directory: Path) -> None:
    """LeRobot's processor files (the action normaliser with the policy's statistics),
    when ``lerobot_policy_sigma`` is installed; without it the folder still loads in Sigma."""
    try:
        from lerobot_policy_sigma.processor_sigma import write_processors
    except ImportError:
        return
    write_processors(directory)


def lerobot_config(
    spec: dict[str, Any],
    bundled: dict[str, str] | None = None,
    stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """config.json for LeRobot (``lerobot_policy_sigma``): type sigma, the spec, the features.

    ``bundled`` (spec key -> subfolder) tells LeRobot's loader which spec paths
    resolve against the folder it loads; ``stats`` are the normalisation statistics
    the policy was trained with (``normalization_stats``: no dataset is needed).

    Cameras become ``observation.images.<camera>``; LeRobot's ``rename_map`` maps a
    dataset's own keys onto them.
    """
    dims = spec["model"]["dims"]
    p = dims["image_size"]
    inputs: dict[str, Any] = {
        f"observation.images.{cam}": {"type": "VISUAL", "shape": [3, p, p]}
        for cam in dims["cameras"]
    }
    inputs["observation.state"] = {"type": "STATE", "shape": [dims["state_dim"]]}
    return {
        "type": "sigma",
        "spec_dict": spec,
        "bundled": dict(bundled or {}),
        "normalization_stats": dict(stats or {}),
        "input_features": inputs,
        "output_features": {"action": {"type": "ACTION", "shape": [dims["action_dim"]]}},
        "device": "cpu",
        "push_to_hub": False,
    }


def model_card(meta: dict[str, Any], report: dict[str, Any] | None, base_model: str | None) -> str:
    """The hub model card: YAML metadata, then what the model is and how it was made."""
    spec = meta["spec"]
    front: dict[str, Any] = {
        "library_name": "sigma-vla",
        "license": "apache-2.0",
        "pipeline_tag": "robotics",
        "tags": ["robotics", "lerobot", "vision-language-action", "sigma-vla"],
    }
    if base_model:
        front["base_model"] = base_model
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        "# Sigma-VLA policy",
        "",
        "A telepathy pathway (semantic memory, intent, τ) that steers a frozen base policy"
        " with residual actions (Sigma, arXiv 2512.00783), trained with "
        f"[sigma-vla](https://pypi.org/project/sigma-vla-cli/) {meta['sigma_version']}.",
        "",
        "```python",
        "from sigma_core import SigmaPolicy",
        "policy = SigmaPolicy.from_pretrained('THIS_FOLDER')  # a local download of this repo",
        "```",
        "",
        "## Components",
        "",
        "| slot | kind | type | distribution | version |",
        "|---|---|---|---|---|",
    ]
    for slot, c in meta["components"].items():
        lines.append(
            f"| {slot} | {c['kind']} | {c['type']} | {c['distribution']} | {c['version']} |"
        )
    train, dims = spec["train"], spec["model"]["dims"]
    lines += [
        "",
        "## Training",
        "",
        f"Stage `{train['stage']}`, {train['steps']} steps, batch {spec['data']['batch_size']}"
        f" x accumulation {train.get('grad_accum', 1)}, precision {train['precision']};"
        f" D = {dims['d_model']}, actions {dims['action_dim']}, horizons"
        f" {dims['chunk_horizon']} / {dims['horizon']}, cameras {', '.join(dims['cameras'])}.",
    ]
    trained_on = meta.get("trained_on")
    if trained_on:
        lines.append(
            f"Data: `{trained_on.get('dataset')}` (fingerprint `{trained_on.get('fingerprint')}`),"
            f" {len(trained_on.get('train_episodes', []))} training episodes."
        )
    pretrained = meta.get("pretrained") or {}
    bundled = set((meta.get("bundled") or {}).values())
    lines += ["", "## Pretrained weights", ""]
    if pretrained:
        lines += ["| module | source | sha256 |", "|---|---|---|"]
        for name, rec in pretrained.items():
            where = f"bundled in `{rec['source']}/`" if rec["source"] in bundled else None
            lines.append(
                f"| {name} | {where or '`' + rec['source'] + '`'} |"
                f" `{rec.get('sha256') or 'not hashed'}` |"
            )
        lines.append("")
        lines.append(
            "Bundled weights load with the folder; download the others to the same paths"
            " (or edit `spec.yaml`) before loading. `SigmaPolicy.from_pretrained` refuses"
            " weights with another sha256."
        )
    else:
        lines.append("None: every tensor is in `model.safetensors`.")
    lines += ["", "## Evaluation", ""]
    lines += evaluation_table(report) if report else ["No evaluation was exported with it."]
    lines += ["", "## Citation", "", CITATIONS, ""]
    return "\n".join(lines)


def evaluation_table(report: dict[str, Any]) -> list[str]:
    """The groups' held-out metrics and the paired comparisons of a sigma eval report."""
    d = report["data"]
    lines = [
        f"`sigma eval`, {report['split']} split: {d['episodes']} held-out episodes,"
        f" {d['windows']} windows (MSE in normalized units).",
        "",
        "| group | mse_vec | mse_chk | mse_trj |",
        "|---|---|---|---|",
    ]
    for g, info in report["groups"].items():
        m = info["metrics"]
        lines.append(f"| {g} | {m['mse_vec']:.4g} | {m['mse_chk']:.4g} | {m['mse_trj']:.4g} |")
    if report.get("comparisons"):
        lines += ["", "| a − b | metric | estimate | 95% interval |", "|---|---|---|---|"]
        for c in report["comparisons"]:
            diff = c["difference"]
            lines.append(
                f"| {c['a']} − {c['b']} | {c['metric']} | {diff['estimate']:+.4g} |"
                f" [{diff['low']:+.4g}, {diff['high']:+.4g}] |"
            )
    loops = report.get("closed_loop") or {}
    if loops:
        lines += [
            "",
            "Closed loop in the simulator (the same held-out seeds for every policy):",
            "",
            "| policy | episodes | success [95% Wilson interval] |",
            "|---|---|---|",
        ]
    for name, summary in loops.items():
        r = summary["success_rate"]
        lines.append(
            f"| {name} | {summary['episodes']} | {summary['successes']}:"
            f" {r['estimate']:.0%} [{r['low']:.0%}, {r['high']:.0%}] |"
        )
    return lines


@user_errors
def export(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Training run (or policy) directory.")],
    out_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to write.")],
    report: Annotated[
        Path | None, typer.Option(help="A sigma eval output (or its report.json) to include.")
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            help="Hub id (or path) of the frozen base: the export names it instead of bundling"
            " it as base/; also the card's base_model metadata."
        ),
    ] = None,
) -> None:
    """Write a hub-ready folder that loads anywhere: weights, PEFT adapter, spec, model card,
    and the frozen base of a stage-sigma run (bundled as base/, or named by --base-model)."""
    folder = export_run(run, out_dir, report, base_model)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    out.print_json(json.dumps({"out": str(folder), "files": files, "bytes": size}))


@user_errors
def push(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Training run (or policy) directory.")],
    repo_id: Annotated[str, typer.Argument(metavar="REPO_ID", help="Hub repo, e.g. me/sigma.")],
    report: Annotated[Path | None, typer.Option(help="A sigma eval output to include.")] = None,
    base_model: Annotated[
        str | None,
        typer.Option(help="Hub id of the frozen base: named instead of bundled as base/."),
    ] = None,
    private: Annotated[bool, typer.Option(help="Create the repo private.")] = False,
) -> None:
    """Export RUN and upload it to the hub (the token comes from `hf auth login`/HF_TOKEN)."""
    import tempfile

    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory(prefix="sigma-push-") as tmp:
        folder = export_run(run, Path(tmp) / "export", report, base_model)
        api = HfApi()
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            commit = api.upload_folder(
                folder_path=str(folder),
                repo_id=repo_id,
                repo_type="model",
                commit_message=f"sigma-vla {__version__}: export of {run.name}",
            )
        except Exception as e:  # network, auth: never echo a token, only the error type
            raise SigmaUserError(
                f"push to {repo_id} failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                "`sigma export` writes the same folder offline"
            ) from None
    out.print_json(json.dumps({"repo_id": repo_id, "commit": str(getattr(commit, "oid", commit))}))
