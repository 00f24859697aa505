"""The shipped contract kit over this plugin's head: shapes at several query counts,
the noise path, its own loss per sample, and that the loss learns a toy target."""

from sigma_core.testing import ComponentContract


class TestDdim(ComponentContract):
    components = [("action.trajectory", "ddim")]
    learn_steps = 60  # a stricter check than the kit's default 40 steps
