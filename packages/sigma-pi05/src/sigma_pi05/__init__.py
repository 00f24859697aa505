"""Sigma-VLA on π0.5: LeRobot's PI05Policy as base policy, backbone and vision, loaded once."""
