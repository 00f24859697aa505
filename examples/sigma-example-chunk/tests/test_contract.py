"""Run Sigma's contract kit over this plugin's component (the kit ships with sigma-vla-core)."""

from sigma_core.testing import ComponentContract


class TestAttentionChunk(ComponentContract):
    components = [("action.chunk", "chunk-attention")]
