"""Where a policy's closed-loop episodes fail, by the last stage they reached.

    python benchmarks/telepathy/failures.py REPORT#POLICY[+REPORT#POLICY ...] [--near 0.01]

Reads ``sigma eval --sim`` reports as ``paired.py`` does (``+`` pools seed ranges) and
splits the failed episodes into those that never grasped (with the range of their closest
tool-to-cube distance) and those that grasped (how many lifted, and how many brought the
cube within ``--near`` metres of the goal): a policy that misses the grasp and one that
is too slow to put the cube down fail differently.
"""

from __future__ import annotations

import argparse

from paired import episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("--near", type=float, default=0.01, help="Metres from the goal.")
    args = parser.parse_args()
    every = episodes(args.report)
    failed = [e for e in every.values() if not e["success"]]
    missed = [e for e in failed if not e["grasped"]]
    held = [e for e in failed if e["grasped"]]
    print(f"{len(failed)} of {len(every)} episodes failed")
    if missed:
        tool = [e["min_tcp_to_obj"] * 100 for e in missed]
        print(
            f"  never grasped: {len(missed)} (closest tool-cube {min(tool):.1f}-{max(tool):.1f} cm)"
        )
    near = sum(e["min_obj_to_goal"] <= args.near for e in held)
    lifted = sum(bool(e["lifted"]) for e in held)
    print(
        f"  grasped: {len(held)} ({lifted} lifted; cube within {args.near} m of the goal: {near})"
    )
    for e in sorted(failed, key=lambda e: e["seed"]):
        stage = "grasped" if e["grasped"] else "missed"
        print(
            f"  {e['seed']}: {stage}, tool-cube {e['min_tcp_to_obj']:.3f} m,"
            f" cube-goal {e['min_obj_to_goal']:.3f} m"
        )


if __name__ == "__main__":
    main()
