"""Example Sigma-VLA plugin: a ``memory`` that updates m_t with a GRU cell."""
