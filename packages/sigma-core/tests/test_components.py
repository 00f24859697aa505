"""Class-definition checks and the contract kit catching broken components."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from sigma_core.components import ChunkBranch, ComponentDefinitionError, Fusion
from sigma_core.config import StrictModel
from sigma_core.plugins.registry import ComponentInfo
from sigma_core.testing import ComponentContract


class Cfg(StrictModel):
    n: int = 2


def test_name_and_config_are_checked_at_class_definition():
    with pytest.raises(ComponentDefinitionError, match="set `name`"):

        class NoName(Fusion):
            config_class = Cfg

            def forward(self, vector, chunk, trajectory):
                return chunk

    with pytest.raises(ComponentDefinitionError, match="config_class"):

        class NoConfig(Fusion):
            name = "noconfig"

            def forward(self, vector, chunk, trajectory):
                return chunk


def test_a_subclass_made_to_rename_inherits_config_class():
    class Base(Fusion):
        name = "base-fusion"
        config_class = Cfg

        def forward(self, vector, chunk, trajectory):
            return chunk

    class Renamed(Base):
        name = "renamed-fusion"

    assert Renamed.config_class is Cfg
    with pytest.raises(ComponentDefinitionError, match="set `name`"):

        class Unnamed(Base):  # the name is never inherited: each class registers its own
            pass


def test_undeclared_shape_symbols_are_rejected():
    with pytest.raises(ComponentDefinitionError, match="undeclared shape symbols"):

        class Weird(Fusion):
            name = "weird"
            config_class = Cfg
            outputs = {"return": ("B", "Q", "A")}

            def forward(self, vector, chunk, trajectory):
                return chunk

    with pytest.raises(ComponentDefinitionError, match="not a field"):

        class BadMap(Fusion):
            name = "badmap"
            config_class = Cfg
            shape_symbols = {"Q": "missing"}

            def forward(self, vector, chunk, trajectory):
                return chunk


class WrongShape(Fusion):
    name = "wrong-shape"
    config_class = Cfg

    def forward(self, vector, chunk, trajectory):
        return trajectory  # (B, T, A) instead of (B, H, A)


class LeakyFrozen(Fusion):
    name = "leaky"
    config_class = Cfg

    def __init__(self, config, dims):
        super().__init__(config, dims)
        self.w = nn.Parameter(torch.ones(1))
        self.frozen = nn.Parameter(torch.ones(1))
        self.frozen.grad = torch.zeros(1)  # a frozen tensor that still collects gradients
        self.frozen.requires_grad_(False)
        self.unused = nn.Parameter(torch.ones(1))

    def forward(self, vector, chunk, trajectory):
        return chunk * self.w


class Noisy(Fusion):
    name = "noisy"
    config_class = Cfg

    def forward(self, vector, chunk, trajectory):
        return chunk + random.random()  # not governed by torch's seed


class Mean(Fusion):
    name = "mean"
    config_class = Cfg

    def forward(self, vector, chunk, trajectory):
        return (chunk + trajectory[:, : chunk.shape[1]]) / 2


def info(cls) -> ComponentInfo:
    return ComponentInfo("fusion", cls.name, Cfg, f"{__name__}:{cls.__name__}", "test")


def test_contract_kit_detects_wrong_shapes():
    with pytest.raises(AssertionError, match="declared"):
        ComponentContract().test_forward_shapes_and_dtypes(info(WrongShape))


def test_contract_kit_detects_missing_and_leaked_gradients():
    with pytest.raises(AssertionError, match="without gradient: \\['unused'\\]"):
        ComponentContract().test_gradients_reach_trainable_parameters_only(info(LeakyFrozen))


def test_contract_kit_detects_nondeterminism():
    with pytest.raises(AssertionError, match="not deterministic"):
        ComponentContract().test_deterministic_under_seed(info(Noisy))


def test_contract_kit_passes_a_good_component():
    kit = ComponentContract()
    kit.test_forward_shapes_and_dtypes(info(Mean))
    kit.test_deterministic_under_seed(info(Mean))
    kit.test_save_load_round_trip(info(Mean))


class FourQueries(ChunkBranch):
    """Hard-wired to 4 queries: passes at N_q = 4, fails when the model feeds 8."""

    name = "four-queries"
    config_class = Cfg

    def __init__(self, config, dims):
        super().__init__(config, dims)
        self.head = nn.Linear(4 * dims.d_model, dims.chunk_horizon * dims.action_dim)

    def forward(self, queries, c_act):
        flat = queries.reshape(queries.shape[0], 4 * self.dims.d_model)
        return self.head(flat).view(-1, self.dims.chunk_horizon, self.dims.action_dim)


class Pooled(ChunkBranch):
    name = "pooled"
    config_class = Cfg

    def __init__(self, config, dims):
        super().__init__(config, dims)
        self.head = nn.Linear(dims.d_model, dims.chunk_horizon * dims.action_dim)

    def forward(self, queries, c_act):
        out = self.head(queries.mean(1) + c_act)
        return out.view(-1, self.dims.chunk_horizon, self.dims.action_dim)


class ScalarLoss(Pooled):
    name = "scalar-loss"
    config_class = Cfg

    def loss(self, queries, c_act, target):
        return (self(queries, c_act) - target).pow(2).mean()  # not per sample


class Stuck(Pooled):
    name = "stuck"
    config_class = Cfg

    def loss(self, queries, c_act, target):  # a loss that no step can lower
        return (self(queries, c_act) * 0 + (target - 1).pow(2)).flatten(1).mean(1)


def chunk_info(cls) -> ComponentInfo:
    return ComponentInfo("action.chunk", cls.name, Cfg, f"{__name__}:{cls.__name__}", "test")


def test_contract_kit_draws_free_shape_symbols_at_more_than_one_size():
    with pytest.raises(AssertionError, match=r"forward fails at .*'N_q': 3.*shape"):
        ComponentContract().test_forward_shapes_and_dtypes(chunk_info(FourQueries))
    ComponentContract().test_forward_shapes_and_dtypes(chunk_info(Pooled))


def test_contract_kit_checks_the_branchs_own_loss():
    kit = ComponentContract()
    kit.test_own_loss_is_per_sample_and_reaches_trainable_parameters(chunk_info(Pooled))
    kit.test_own_loss_learns_a_toy_target(chunk_info(Pooled))
    with pytest.raises(AssertionError, match=r"loss\(\) must be per sample"):
        kit.test_own_loss_is_per_sample_and_reaches_trainable_parameters(chunk_info(ScalarLoss))
    with pytest.raises(AssertionError, match="steps of its own loss took it from"):
        kit.test_own_loss_learns_a_toy_target(chunk_info(Stuck))
