"""The test kit Sigma ships for plugin authors (and its own tests).

* :class:`ComponentContract`, :class:`DataSourceContract`: the contract every
  component and data source passes (:mod:`sigma_core.testing.contract`, also the
  pytest plugin that parametrizes them over the registry).
* :func:`example_batch`, :func:`write_synthetic_shards`: fakes at any dims;
  :func:`planned_actions`: a policy's plan under a seed, to compare two loads
  (:mod:`sigma_core.testing.fakes`).
"""

from sigma_core.testing.contract import (
    CONTRACT_DIMS,
    ComponentContract,
    DataSourceContract,
    build,
    contract_config,
)
from sigma_core.testing.fakes import example_batch, planned_actions, write_synthetic_shards

__all__ = [
    "CONTRACT_DIMS",
    "ComponentContract",
    "DataSourceContract",
    "build",
    "contract_config",
    "example_batch",
    "planned_actions",
    "write_synthetic_shards",
]
