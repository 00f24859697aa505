"""Sigma-VLA bridge to LeRobot datasets."""
