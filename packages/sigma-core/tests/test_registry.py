"""Registry: registration, duplicates, isolation of broken plugins, env switches, lookups."""

from __future__ import annotations

import sys
import types

import pytest

from conftest import FakeConfig, OpenConfig, make_plugin
from sigma_core.errors import (
    DuplicateComponentError,
    PluginLoadError,
    SigmaUserError,
    UnknownComponentError,
    UnknownKindError,
)
from sigma_core.plugins.hookspecs import hookimpl
from sigma_core.plugins.registry import Registry, load_registry


def test_plugin_components_are_registered_with_their_plugin():
    reg = load_registry(entry_points=False, plugins=[make_plugin("p1", [("fusion", "avg")])])
    info = reg.get("fusion", "avg")
    assert (info.plugin, info.config_class, info.impl) == ("p1", FakeConfig, "p1_impl:Thing")
    assert reg.plugins[0].status == "ok"
    assert reg.plugins[0].components == [("fusion", "avg")]


def test_registration_is_lazy_implementation_not_imported():
    reg = load_registry(entry_points=False, plugins=[make_plugin("lazyp", [("fusion", "x")])])
    assert "lazyp_impl" not in sys.modules
    with pytest.raises(PluginLoadError, match="cannot import fusion component 'x'"):
        reg.get("fusion", "x").load()


def test_a_name_clash_affects_only_that_name_and_names_both_providers(capsys):
    reg = load_registry(
        entry_points=False,
        plugins=[
            make_plugin("a", [("fusion", "avg")]),
            make_plugin("b", [("fusion", "avg"), ("fusion", "only-b")]),
        ],
    )
    assert reg.get("fusion", "avg").plugin == "a"  # the first loaded is the default
    assert reg.get("fusion", "avg", provider="b").plugin == "b"  # the other on request
    assert reg.get("fusion", "only-b").plugin == "b"  # the rest of plugin b is there
    b = next(p for p in reg.plugins if p.name == "b")
    assert b.status == "ok"
    (clash,) = reg.clashes
    assert clash.message().startswith("fusion 'avg' is provided by plugin 'a' (used by default)")
    assert "and by plugin 'b'; pin one in the spec with `from: b`" in clash.message()
    assert "name clash: fusion 'avg'" in capsys.readouterr().err
    with pytest.raises(UnknownComponentError, match="from 'c': not installed; provided by: a, b"):
        reg.get("fusion", "avg", provider="c")


def test_duplicate_raises_directly_and_override_replaces():
    reg = Registry()
    reg.register(kind="fusion", name="avg", config=FakeConfig, impl="m:A")
    with pytest.raises(DuplicateComponentError, match="override=True"):
        reg.register(kind="fusion", name="avg", config=FakeConfig, impl="m:B")
    reg.register(kind="fusion", name="avg", config=FakeConfig, impl="m:B", override=True)
    assert reg.get("fusion", "avg").impl == "m:B"


def test_failing_plugin_is_rolled_back_and_others_survive():
    good = make_plugin("good", [("fusion", "ok")])
    bad = make_plugin("bad", [("fusion", "half")], fail=True)
    reg = load_registry(entry_points=False, plugins=[bad, good])
    assert ("fusion", "half") not in reg  # partial registration rolled back
    assert ("fusion", "ok") in reg
    info = next(p for p in reg.plugins if p.name == "bad")
    assert info.status == "failed" and "boom in plugin" in info.error and info.components == []


def test_strict_mode_raises(monkeypatch):
    bad = make_plugin("bad", [], fail=True)
    with pytest.raises(PluginLoadError, match="boom in plugin"):
        load_registry(entry_points=False, plugins=[bad], strict=True)
    monkeypatch.setenv("SIGMA_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError):
        load_registry(entry_points=False, plugins=[make_plugin("bad2", [], fail=True)])


def test_unknown_hook_is_caught_by_check_pending():
    module = types.ModuleType("typo")

    @hookimpl
    def sigma_register_component(register):  # missing "s": not a Sigma hook
        pass

    module.sigma_register_component = sigma_register_component
    reg = load_registry(entry_points=False, plugins=[module])
    assert reg.plugins[0].status == "failed"
    assert "sigma_register_component" in reg.plugins[0].error


def test_hook_may_omit_arguments():
    module = types.ModuleType("noargs")

    @hookimpl
    def sigma_register_components():
        module.called = True

    module.sigma_register_components = sigma_register_components
    reg = load_registry(entry_points=False, plugins=[module])
    assert reg.plugins[0].status == "ok" and module.called


def test_unknown_name_lists_choices_and_suggests_closest():
    reg = load_registry(
        entry_points=False, plugins=[make_plugin("p", [("fusion", "weighted"), ("fusion", "max")])]
    )
    with pytest.raises(UnknownComponentError) as exc:
        reg.get("fusion", "wieghted")
    assert "registered: max, weighted" in str(exc.value)
    assert "Did you mean 'weighted'?" in str(exc.value)


def test_unknown_name_mentions_failed_plugins():
    reg = load_registry(
        entry_points=False,
        plugins=[make_plugin("p", [("fusion", "max")]), make_plugin("bad", [], fail=True)],
    )
    with pytest.raises(UnknownComponentError, match="plugins that failed to load: bad"):
        reg.get("fusion", "mine")


def test_unknown_kind_and_bad_registrations():
    reg = Registry()
    with pytest.raises(UnknownKindError, match="Did you mean 'fusion'"):
        reg.register(kind="fusoin", name="a", config=FakeConfig, impl="m:A")
    with pytest.raises(SigmaUserError, match="must forbid unknown keys"):
        reg.register(kind="fusion", name="a", config=OpenConfig, impl="m:A")
    with pytest.raises(SigmaUserError, match="invalid component name"):
        reg.register(kind="fusion", name="Bad Name", config=FakeConfig, impl="m:A")
    with pytest.raises(SigmaUserError, match="impl must look like"):
        reg.register(kind="fusion", name="a", config=FakeConfig, impl="no-colon")


def test_installed_entry_points_cover_every_model_kind():
    from sigma_core.kinds import KINDS

    reg = load_registry(env={})
    kinds = {c.kind for c in reg.components()}
    assert kinds >= set(KINDS) - {"data_source"}
    assert {p.distribution for p in reg.plugins} >= {"sigma-vla-core", "sigma-vla-vision"}


def test_env_allow_and_deny_lists():
    only = load_registry(env={"SIGMA_LOAD_PLUGINS": "core"})
    assert {c.kind for c in only.components()} == {"base_policy"}
    assert {p.name for p in only.plugins if p.status == "disabled"} >= {"vision", "intent"}
    denied = load_registry(env={"SIGMA_DISABLE_PLUGINS": "sigma-vla-vision"})
    assert "perceiver" not in denied.names("vision")
    assert denied.names("memory")  # the others still load


def test_trace_mode_logs_hook_calls(capsys):
    load_registry(env={"SIGMA_TRACE_PLUGINS": "1", "SIGMA_LOAD_PLUGINS": "core"})
    assert "sigma-trace:" in capsys.readouterr().err


# -- clash rules: two fake distributions --------------------------------------
def _two_dists(*, prefer=(), strict=False, third_first=True):
    """A registry where ``acme-fusion`` (third party) and ``sigma-vla-action`` both
    register ``fusion: avg``; the third party loads first (it sorts first)."""
    reg = Registry(prefer=prefer)
    third = (make_plugin("acme", [("fusion", "avg"), ("fusion", "acme-only")]), "acme-fusion")
    own = (make_plugin("action", [("fusion", "avg")]), "sigma-vla-action")
    for module, dist in (third, own) if third_first else (own, third):
        reg.register_plugin(
            module, name=module.__name__, distribution=dist, version="0.1.0", strict=strict
        )
    return reg


@pytest.mark.parametrize("third_first", [True, False])
def test_sigmas_own_distribution_keeps_a_clashed_name(third_first, capsys):
    reg = _two_dists(third_first=third_first)
    assert reg.get("fusion", "avg").distribution == "sigma-vla-action"  # whatever the order
    assert reg.get("fusion", "avg", provider="acme-fusion").plugin == "acme"  # on a pin only
    assert reg.get("fusion", "acme-only").distribution == "acme-fusion"  # the rest is there
    assert [c.distribution for c in reg.providers("fusion", "avg")] == [
        "sigma-vla-action",
        "acme-fusion",
    ]
    (clash,) = reg.clashes
    assert clash.message().startswith(
        "fusion 'avg' is provided by sigma-vla-action 0.1.0 (Sigma's own, used by default)"
        " and by acme-fusion 0.1.0; pin one in the spec with `from: acme-fusion`"
    )
    assert "SIGMA_PREFER_PLUGINS" in clash.message()
    assert "name clash: fusion 'avg'" in capsys.readouterr().err


def test_prefer_plugins_opts_in_to_a_third_party_globally():
    for prefer in ({"acme-fusion"}, {"acme"}):  # distribution or plugin name
        reg = _two_dists(prefer=prefer)
        assert reg.get("fusion", "avg").distribution == "acme-fusion"
        assert reg.get("fusion", "avg", provider="sigma-vla-action").plugin == "action"
    loaded = load_registry(entry_points=False, env={"SIGMA_PREFER_PLUGINS": "acme-fusion, x"})
    assert loaded.prefer == {"acme-fusion", "x"}


def test_a_stock_spec_is_not_changed_by_a_clashing_third_party():
    from sigma_core.spec import validate_spec

    reg = load_registry(env={})
    own = reg.get("memory", "gated")
    reg.register_plugin(
        make_plugin("aaa", [("memory", "gated")]),
        name="aaa",
        distribution="aaa-impostor",
        version="1.0",
    )
    assert reg.get("memory", "gated") is own
    spec = validate_spec({}, reg)
    assert spec.model.memory.provider == "sigma-vla-intent"  # pinned in the resolved spec
    pinned = validate_spec({"model": {"memory": {"type": "gated", "from": "aaa-impostor"}}}, reg)
    assert pinned.model.memory.provider == "aaa-impostor"


def test_strict_mode_makes_a_clash_an_error():
    with pytest.raises(PluginLoadError, match=r"plugin 'action' failed to load: .*name clash") as e:
        _two_dists(strict=True)
    assert "SIGMA_STRICT_PLUGINS=1" in str(e.value) and "acme-fusion" in str(e.value)


def test_a_duplicate_within_one_plugin_skips_only_that_name(capsys):
    module = types.ModuleType("twice")

    @hookimpl
    def sigma_register_components(register):
        register(kind="fusion", name="avg", config=FakeConfig, impl="twice_impl:A")
        register(kind="fusion", name="avg", config=OpenConfig, impl="twice_impl:B")
        register(kind="fusion", name="other", config=FakeConfig, impl="twice_impl:C")

    module.sigma_register_components = sigma_register_components
    reg = load_registry(entry_points=False, plugins=[module])
    (info,) = reg.plugins
    assert info.status == "ok" and info.skipped == ["fusion:avg"]
    assert reg.get("fusion", "avg").impl == "twice_impl:A"  # the first is kept
    assert reg.get("fusion", "other").impl == "twice_impl:C"  # the rest of the plugin loads
    assert "plugin 'twice' registered fusion 'avg' twice; kept the first" in capsys.readouterr().err
    with pytest.raises(PluginLoadError, match="registered fusion 'avg' twice"):
        load_registry(entry_points=False, plugins=[module], strict=True)


def test_register_override_has_no_effect_and_warns():
    module = types.ModuleType("grabby")

    @hookimpl
    def sigma_register_components(register):
        register(kind="fusion", name="avg", config=FakeConfig, impl="grabby:X", override=True)

    module.sigma_register_components = sigma_register_components
    reg = Registry()
    reg.register_plugin(make_plugin("action", [("fusion", "avg")]), distribution="sigma-vla-a")
    with pytest.warns(DeprecationWarning, match="override=True.*has no effect"):
        reg.register_plugin(module, distribution="grabby-dist")
    assert reg.get("fusion", "avg").plugin == "action"
