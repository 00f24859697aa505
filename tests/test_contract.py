"""The contract kit over everything registered (ours and any installed plugin): no opt-outs."""

from sigma_core.testing import ComponentContract, DataSourceContract


class TestEveryRegisteredComponent(ComponentContract):
    components = "all"


class TestEveryRegisteredDataSource(DataSourceContract):
    data_sources = "all"
