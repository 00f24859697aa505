"""The shipped contract kit over this plugin's memory: shapes at two batch sizes and
widths, gradients, save/load, determinism, and a memory's own promise (m_t depends on
m_prev through time, finite from the zero state, bounded over 200 steps)."""

from sigma_core.testing import ComponentContract


class TestGru(ComponentContract):
    components = [("memory", "gru")]
