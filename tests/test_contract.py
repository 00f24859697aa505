"""The contract kit over every registered component (ours and any installed plugin)."""

from sigma_core.testing import ComponentContract


class TestEveryRegisteredComponent(ComponentContract):
    components = "all"
