"""Class-definition checks and the contract kit catching broken components."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from sigma_core.components import ComponentDefinitionError, Fusion
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
