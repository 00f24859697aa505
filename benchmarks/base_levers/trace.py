"""A per-step trace of one policy's closed-loop episodes: where a pick and place goes wrong.

    python benchmarks/base_levers/trace.py POLICY SHARDS SEEDS [--every 6] [--stride 8]

SEEDS: comma-separated evaluation seeds (as ``sigma eval --sim``: 10000 is the first).
Every ``--every`` steps it prints the gripper command and state (0-100), whether the
simulator counts the cube grasped, its lift, its distance to the goal disc, and the
placed / static / success flags. Renders every step (a trace, not a benchmark).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sigma_core import SigmaPolicy
from sigma_core.data import ActionSpace, Normalizer, ObservationProcessor
from sigma_sim import rollout as loop
from sigma_sim.scene import environment_state, make_env, reset_episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("shards")
    parser.add_argument("seeds")
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = SigmaPolicy.from_pretrained(args.policy).eval()
    meta = json.loads((Path(args.shards) / "meta.json").read_text())
    dims, stats = policy.dims, meta["stats"]
    cfg = loop.scene_config(meta, distractors=None, image_size=dims.image_size, fps=30)
    env = make_env(cfg)
    low, high = env.action_space.low.astype(float), env.action_space.high.astype(float)
    gripper = (float(low[-1]), float(high[-1]))
    actions, space = Normalizer(stats["action"]), ActionSpace(policy.spec.data.actions, stats)
    scene = dims.environment_state_dim
    cameras = loop.sim_cameras(meta, list(dims.cameras))
    processor = ObservationProcessor.for_policy(dims, stats)
    observer = loop.Observer(cameras, processor, gripper, torch.device("cpu"))
    colors, stride = list(cfg.cube_colors), args.stride or policy.spec.run_stride()
    try:
        for seed in (int(s) for s in args.seeds.split(",")):
            env_seed = loop.eval_env_seed(seed, 0)
            torch.manual_seed(env_seed)
            obs, info, episode = reset_episode(env, env_seed, colors)
            policy.reset(stride)
            observer.reset()
            print(f"seed {seed}: {episode.task}")
            for t in range(round(args.max_seconds * 30)):
                env_state = environment_state(env, colors) if scene else None
                batch = observer.batch(obs, episode.task, env_state)
                if t % stride == 0:
                    anchor = batch.state
                row = actions.denormalize(space.decode(policy.step(batch), anchor)[0]).numpy()
                grip_now = loop.sim_to_dataset(obs["state"], gripper)[5]
                target = np.clip(loop.dataset_to_sim(row, gripper), low, high)
                obs, _, _, _, info = env.step(target)
                if t % args.every == 0 or info["success"]:
                    print(
                        f"  t {t:3d}  gripper cmd {row[5]:5.1f} state {grip_now:5.1f}  "
                        f"grasped {int(info['is_grasped'] > 0.5)}  lift {info['lift_height']:.3f}"
                        f"  cube-goal {info['obj_to_target_dist']:.3f}  placed "
                        f"{int(info['is_obj_placed'])} static {int(info['is_obj_static'])}"
                        f" success {int(info['success'])}"
                    )
                if info["success"]:
                    break
    finally:
        env.close()


if __name__ == "__main__":
    main()
