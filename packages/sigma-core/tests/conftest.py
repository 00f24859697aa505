"""Fixtures: a hermetic plugin module built in memory."""

from __future__ import annotations

import types

import pytest
from pydantic import ConfigDict

from sigma_core.config import StrictModel
from sigma_core.plugins.hookspecs import hookimpl


class FakeConfig(StrictModel):
    width: int = 3


class OpenConfig(StrictModel):
    model_config = ConfigDict(extra="allow")


def make_plugin(name: str, components: list[tuple[str, str]], *, fail: bool = False):
    """A plugin module registering ``components`` (kind, name); ``fail`` raises after them."""
    module = types.ModuleType(name)

    @hookimpl
    def sigma_register_components(register):
        for kind, comp in components:
            register(kind=kind, name=comp, config=FakeConfig, impl=f"{name}_impl:Thing")
        if fail:
            raise RuntimeError("boom in plugin")

    module.sigma_register_components = sigma_register_components
    return module


@pytest.fixture
def plugin_factory():
    return make_plugin
