"""Test support: a small Sigma policy trained on simulator demonstrations, ready for LeRobot.

:func:`tiny_sim_policy` records a few 32 px demonstrations of the so101-pickplace
scene, preprocesses them, trains a tiny stage-base policy for a few steps with
``sigma train`` (out of process) and exports it with ``sigma export``, which writes
LeRobot's normaliser processors into the export, so that ``lerobot-eval
--policy.path=<export>`` and ``lerobot-rollout`` load it as is.
Never imported by production code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The cameras of the simulator's recordings (spec camera = dataset camera).
CAMERAS = ["overhead", "wrist"]
#: The tiny model: configs/base-tiny.yaml's components at these sizes.
TINY_DIMS = {
    "d_model": 32,
    "action_dim": 6,
    "state_dim": 6,
    "chunk_horizon": 4,
    "horizon": 8,
    "cameras": CAMERAS,
    "image_size": 32,
    "frame_history": 1,
}


@dataclass(frozen=True)
class SimPolicy:
    """What :func:`tiny_sim_policy` made (paths under its root)."""

    root: Path
    dataset: Path  # the recorded LeRobot dataset
    shards: Path  # preprocessed (1 of 3 episodes held out as val)
    run: Path  # the sigma train run
    export: Path  # sigma export + LeRobot processors

    @property
    def meta(self) -> dict[str, Any]:
        """The shards' meta.json."""
        return json.loads((self.shards / "meta.json").read_text())


def subprocess_env() -> dict[str, str]:
    """The environment for the CLIs: one thread, offline hub, EGL rendering."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
    }


def sigma_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``sigma ARGS`` in a fresh interpreter (the installed console script's module)."""
    cmd = [sys.executable, "-m", "sigma_cli", *map(str, args)]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=subprocess_env(), cwd=cwd, timeout=600
    )


def tiny_spec(steps: int = 4) -> dict[str, Any]:
    """configs/base-tiny.yaml's components at :data:`TINY_DIMS` (stage base, CPU)."""
    return {
        "model": {
            "dims": dict(TINY_DIMS),
            "vision": {"type": "perceiver", "patch_size": 8, "num_queries": 8},
            "backbone": {"type": "tiny", "hidden_size": 32, "num_layers": 1},
            "memory": {"type": "gated"},
            "intent": {"type": "sigma", "num_factors": 4},
            "query": {"type": "sigma", "num_queries": 4},
            "vector": {"type": "token", "num_bins": 64},
            "chunk": {"type": "chunk-pooling"},
            "trajectory": {"type": "mlp"},
            "residual": {"type": "mlp"},
            "fusion": {"type": "weighted"},
            "controller": {"type": "clip"},
            "adapter": {"type": "risk"},
        },
        "base_policy": {"type": "internal"},
        "data": {"batch_size": 4},
        "train": {"stage": "base", "steps": steps, "lr": 1.0e-3, "warmup_steps": 1, "seed": 0},
    }


def tiny_sim_policy(root: Path, episodes: int = 3, steps: int = 4) -> SimPolicy:
    """Record, preprocess, train, export (see the module docstring); about a minute.

    A ``root`` that a finished call already filled is returned as is (test modules
    of one session share it through ``tmp_path_factory.getbasetemp()``).

    Raises:
        AssertionError: a CLI step failed (its output in the message).
    """
    import yaml

    from sigma_core.data import PreprocessOptions, preprocess
    from sigma_lerobot.dataset import LeRobotSource
    from sigma_sim.config import So101PickPlaceConfig
    from sigma_sim.source import So101PickPlace

    paths = SimPolicy(root, root / "sim", root / "shards", root / "run", root / "export")
    if (root / "done").is_file():
        return paths
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    So101PickPlace(So101PickPlaceConfig(image_size=32)).write(
        paths.dataset, episodes, progress=False
    )
    opts = PreprocessOptions(
        cameras=CAMERAS,
        image_size=32,
        horizon=TINY_DIMS["horizon"],
        chunk=TINY_DIMS["chunk_horizon"],
        val_fraction=1 / episodes,
        test_fraction=0,
    )
    preprocess(LeRobotSource(str(paths.dataset), CAMERAS), paths.shards, opts)
    (root / "spec.yaml").write_text(yaml.safe_dump(tiny_spec(steps)))
    trained = sigma_cli(
        "train", root / "spec.yaml", "--data", paths.shards, "--out", paths.run,
        "--device", "cpu", "--val-every", "1000", "--checkpoint-every", "1000",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    exported = sigma_cli("export", paths.run, paths.export)
    assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-3000:]
    assert (paths.export / "policy_preprocessor.json").is_file(), "export without processors"
    (root / "done").write_text("")
    return paths


__all__ = [
    "CAMERAS",
    "TINY_DIMS",
    "SimPolicy",
    "sigma_cli",
    "subprocess_env",
    "tiny_sim_policy",
    "tiny_spec",
]
