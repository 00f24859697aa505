"""Example Sigma-VLA plugin: an ``action.trajectory`` head trained as a DDPM, sampled by DDIM."""
