"""Example Sigma-VLA plugin: a chunk head with one attention query per chunk step."""
