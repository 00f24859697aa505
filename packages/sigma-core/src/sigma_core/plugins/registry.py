"""The component registry: plugins found through entry points, configs eager, code lazy.

Discovery reads the ``sigma`` entry-point group (metadata only, so it survives
editable installs), imports each plugin module (which must not import torch),
registers it with a pluggy ``PluginManager`` and calls its
``sigma_register_components`` hook with a ``register`` callback bound to that
plugin, so every component knows the distribution it came from.

A plugin that fails to import, implements an unknown hook or raises while
registering is skipped and reported with its error, and whatever it registered
is rolled back. ``SIGMA_STRICT_PLUGINS=1`` turns that, and any name clash, into
an exception. ``SIGMA_LOAD_PLUGINS=a,b`` loads only the named plugins
(entry-point or distribution names), ``SIGMA_DISABLE_PLUGINS=a,b`` skips them and
``SIGMA_TRACE_PLUGINS=1`` logs every hook call to stderr.

The clash rule (one, host-owned; a plugin cannot claim a name itself): when
several plugins register the same (kind, name), every registration stays
available on request (``from: <distribution>`` in a spec) and the default is
chosen by :func:`default_rank`: a plugin named in ``SIGMA_PREFER_PLUGINS``
first, then Sigma's own distributions (``sigma-vla-*``), then load order
(entry points sorted by name). So a third-party plugin never takes over a
built-in name unless a spec pins it or the user opts in globally.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel

from sigma_core.errors import (
    DuplicateComponentError,
    PluginLoadError,
    SigmaUserError,
    UnknownComponentError,
    UnknownKindError,
)
from sigma_core.kinds import KINDS
from sigma_core.plugins import hookspecs

ENTRY_POINT_GROUP = "sigma"
#: distributions whose names start with this are Sigma's own (they keep a clashed name).
OWN_PREFIX = "sigma-vla-"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_IMPL_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component: what the spec names and where its code lives."""

    kind: str
    name: str
    config_class: type[BaseModel]
    impl: str
    plugin: str
    distribution: str | None = None
    version: str | None = None

    def load(self) -> type[Any]:
        """Import the implementation class and check it matches the registration.

        Raises:
            PluginLoadError: the module or class cannot be imported, or the class
                is not a component of this kind with this name and config.
        """
        module_name, _, attr = self.impl.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:  # any import-time failure belongs to the plugin
            raise PluginLoadError(
                f"cannot import {self.kind} component {self.name!r} from {self.impl!r} "
                f"(plugin {self.plugin!r}): {type(exc).__name__}: {exc}"
            ) from exc
        from sigma_core.components import component_base  # torch only from here on

        base = component_base(self.kind)
        problems = []
        if not (isinstance(cls, type) and issubclass(cls, base)):
            problems.append(f"is not a subclass of {base.__name__}")
        elif cls.name != self.name:
            problems.append(f"declares name {cls.name!r}")
        elif cls.config_class is not self.config_class:
            problems.append(f"uses config_class {cls.config_class.__name__}")
        if problems:
            raise PluginLoadError(
                f"{self.impl} registered as {self.kind} {self.name!r} "
                f"with config {self.config_class.__name__} but {problems[0]}"
            )
        return cls

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "config": f"{self.config_class.__module__}:{self.config_class.__qualname__}",
            "impl": self.impl,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
        }


@dataclass
class PluginInfo:
    """A discovered plugin and what happened when it was loaded."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: str = "ok"  # ok | failed | disabled
    error: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)
    #: registrations of this plugin that were skipped (a name it registered twice).
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "components": [f"{k}:{n}" for k, n in self.components],
            "skipped": list(self.skipped),
        }


def is_own(info: ComponentInfo) -> bool:
    """Whether ``info`` comes from one of Sigma's own distributions (``sigma-vla-*``)."""
    return (info.distribution or "").startswith(OWN_PREFIX)


def default_rank(info: ComponentInfo, prefer: Iterable[str] = ()) -> int:
    """Rank of a provider for the default of a clashed name (lowest wins, ties: load order).

    0: named in ``SIGMA_PREFER_PLUGINS`` (by plugin or distribution name);
    1: one of Sigma's own distributions; 2: any other plugin.
    """
    if {info.plugin, info.distribution} & set(prefer):
        return 0
    return 1 if is_own(info) else 2


@dataclass(frozen=True)
class Clash:
    """Two plugins registered the same (kind, name): ``used`` by default, ``other`` on request.

    Only that name is affected: both plugins' other components load normally. A
    spec picks a provider with ``from: <distribution>`` next to ``type:``; which
    one is the default follows :func:`default_rank`.
    """

    kind: str
    name: str
    used: ComponentInfo
    other: ComponentInfo

    def message(self) -> str:
        """``kind 'name' is provided by A (used) and by B (pin one with ...)``."""
        why = "Sigma's own, " if is_own(self.used) and not is_own(self.other) else ""
        return (
            f"{self.kind} {self.name!r} is provided by {_provider(self.used)} "
            f"({why}used by default) and by {_provider(self.other)}; pin one in the spec with"
            f" `from: {self.other.distribution or self.other.plugin}` next to `type: {self.name}`"
            " (or set SIGMA_PREFER_PLUGINS to prefer a plugin everywhere)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "used": _provider(self.used),
            "other": _provider(self.other),
        }


def _provider(info: ComponentInfo) -> str:
    if info.distribution:
        return f"{info.distribution} {info.version or ''}".strip()
    return f"plugin {info.plugin!r}"


def _env_list(env: Mapping[str, str], key: str) -> set[str] | None:
    raw = env.get(key)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def closest(name: str, choices: Iterable[str]) -> str | None:
    """Return the registered name closest to ``name`` (difflib), if any is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def _check_registration(kind: str, name: str, config: type[BaseModel], impl: str) -> None:
    """Raise :class:`SigmaUserError` for a malformed registration (kind, name, config, impl)."""
    if kind not in KINDS:
        raise UnknownKindError(
            f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}"
            + _suggest(kind, KINDS)
        )
    if not _NAME_RE.match(name):
        raise SigmaUserError(
            f"invalid component name {name!r}: use lowercase letters, digits, '-', '_', '.'"
        )
    if not (isinstance(config, type) and issubclass(config, BaseModel)):
        raise SigmaUserError(f"{kind} {name!r}: config must be a pydantic BaseModel class")
    if config.model_config.get("extra") != "forbid":
        raise SigmaUserError(
            f"{kind} {name!r}: config {config.__name__} must forbid unknown keys "
            "(model_config = ConfigDict(extra='forbid'))"
        )
    if not _IMPL_RE.match(impl):
        raise SigmaUserError(f"{kind} {name!r}: impl must look like 'pkg.module:Class'")


class Registry:
    """Components by (kind, name), and the plugins that registered them."""

    def __init__(self, *, prefer: Iterable[str] = ()) -> None:
        #: the default provider of each (kind, name)
        self._components: dict[tuple[str, str], ComponentInfo] = {}
        #: every provider of each (kind, name), in load order
        self._providers: dict[tuple[str, str], list[ComponentInfo]] = {}
        self._plugins: dict[str, PluginInfo] = {}
        #: plugin or distribution names that win clashes (``SIGMA_PREFER_PLUGINS``)
        self.prefer: frozenset[str] = frozenset(prefer)
        self.pm = pluggy.PluginManager("sigma")
        self.pm.add_hookspecs(hookspecs)
        #: log every hook call and registration to stderr (``SIGMA_TRACE_PLUGINS=1``).
        self.trace = False

    def _log(self, message: str) -> None:
        if self.trace:
            print(f"sigma-trace: {message}", file=sys.stderr)

    # -- registration -------------------------------------------------------
    def register(
        self,
        *,
        kind: str,
        name: str,
        config: type[BaseModel],
        impl: str,
        override: bool = False,
        plugin: str = "<direct>",
        distribution: str | None = None,
        version: str | None = None,
    ) -> ComponentInfo:
        """Register one component (the ``register`` callback of the plugin hook).

        Raises:
            UnknownKindError: ``kind`` is not one of :data:`KINDS`.
            DuplicateComponentError: ``(kind, name)`` exists and ``override`` is false.
            SigmaUserError: a malformed name, config or impl string.
        """
        _check_registration(kind, name, config, impl)
        key = (kind, name)
        if key in self._components and not override:
            prev = self._components[key]
            raise DuplicateComponentError(
                f"{kind} component {name!r} is registered twice: by plugin {prev.plugin!r} "
                f"and by {plugin!r}; pass override=True to replace it on purpose"
            )
        info = ComponentInfo(kind, name, config, impl, plugin, distribution, version)
        self._components[key] = info
        self._providers[key] = [info]
        return info

    def _add_provider(self, info: ComponentInfo) -> Clash:
        """Add another plugin's registration of a taken name; re-pick the default."""
        key = (info.kind, info.name)
        providers = [*self._providers[key], info]
        self._providers[key] = providers
        order = {id(c): i for i, c in enumerate(providers)}
        ranked = sorted(providers, key=lambda c: (default_rank(c, self.prefer), order[id(c)]))
        self._components[key] = ranked[0]
        used, other = ranked[0], info if ranked[0] is not info else ranked[1]
        return Clash(info.kind, info.name, used, other)

    def register_plugin(
        self,
        plugin: ModuleType | object,
        *,
        name: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
        strict: bool = False,
    ) -> PluginInfo:
        """Register a plugin object (module or instance) and run its hook, isolated.

        On failure the plugin is unregistered, its components are rolled back
        and its :class:`PluginInfo` records the error (``strict`` re-raises).
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name, getattr(plugin, "__name__", type(plugin).__name__))
        info.distribution, info.version = distribution, version
        self._plugins[name] = info
        before = dict(self._components)
        providers = {k: list(v) for k, v in self._providers.items()}
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
            self._call_hook(plugin, info, strict=strict)
        except Exception as exc:
            self._components, self._providers = before, providers
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(info, exc, strict)
        return info

    def _call_hook(self, plugin: object, info: PluginInfo, *, strict: bool = False) -> None:
        def register(
            *, kind: str, name: str, config: type[BaseModel], impl: str, override: bool = False
        ) -> None:
            if override:
                warnings.warn(
                    f"plugin {info.name!r}: register(override=True) for {kind} {name!r} has no "
                    "effect (removed in 0.3): on a name clash Sigma's own components keep the "
                    "name; users pick another provider with `from:` or SIGMA_PREFER_PLUGINS",
                    DeprecationWarning,
                    stacklevel=2,
                )
            prev = self._providers.get((kind, name), [])
            if any(p.plugin == info.name for p in prev):
                message = f"plugin {info.name!r} registered {kind} {name!r} twice; kept the first"
                if strict:
                    raise DuplicateComponentError(message)
                info.skipped.append(f"{kind}:{name}")
                print(f"sigma: {message}", file=sys.stderr)
                return
            if prev:
                _check_registration(kind, name, config, impl)
                clash = self._add_provider(
                    ComponentInfo(
                        kind, name, config, impl, info.name, info.distribution, info.version
                    )
                )
                if strict:
                    raise DuplicateComponentError(
                        f"name clash (SIGMA_STRICT_PLUGINS=1 makes it an error): {clash.message()}"
                    )
                info.components.append((kind, name))
                print(f"sigma: name clash: {clash.message()}", file=sys.stderr)
                return
            self.register(
                kind=kind,
                name=name,
                config=config,
                impl=impl,
                plugin=info.name,
                distribution=info.distribution,
                version=info.version,
            )
            info.components.append((kind, name))
            self._log(f"  register(kind={kind!r}, name={name!r}, impl={impl!r})")

        for hook in self.pm.hook.sigma_register_components.get_hookimpls():
            if hook.plugin is plugin:
                # Pass only the arguments the implementation asks for (pluggy's
                # rule), so hooks can gain arguments without breaking plugins.
                available = {"register": register}
                self._log(f"{info.name}.sigma_register_components({', '.join(hook.argnames)})")
                hook.function(*[available[arg] for arg in hook.argnames])

    def _fail(self, info: PluginInfo, exc: BaseException, strict: bool) -> None:
        info.status = "failed"
        info.error = f"{type(exc).__name__}: {exc}"
        info.components = []
        if strict:
            raise PluginLoadError(f"plugin {info.name!r} failed to load: {info.error}") from exc
        print(f"sigma: skipped plugin {info.name!r}: {info.error}", file=sys.stderr)

    def discover(
        self, *, only: set[str] | None = None, deny: Iterable[str] = (), strict: bool = False
    ) -> None:
        """Load every plugin of the ``sigma`` entry-point group, in name order.

        Args:
            only: load only these entry-point or distribution names (None: all).
            deny: skip these (recorded with status ``disabled``).
            strict: re-raise a plugin's failure instead of recording it.
        """
        deny = set(deny)
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            if not _selected(ep, dist, only, deny):
                self._plugins[ep.name] = PluginInfo(
                    ep.name, ep.value, dist, version, status="disabled"
                )
                continue
            try:
                module = ep.load()
            except Exception as exc:
                info = PluginInfo(ep.name, ep.value, dist, version)
                self._plugins[ep.name] = info
                self._fail(info, exc, strict)
                continue
            self.register_plugin(
                module, name=ep.name, distribution=dist, version=version, strict=strict
            )

    # -- lookup -------------------------------------------------------------
    def get(self, kind: str, name: str, provider: str | None = None) -> ComponentInfo:
        """Look up a component, with an error that lists the choices and the closest.

        Args:
            provider: a distribution (or plugin) name: which of several plugins that
                registered ``name`` to use (see :class:`Clash`); default the first.
        """
        if kind not in KINDS:
            raise UnknownKindError(f"unknown component kind {kind!r}" + _suggest(kind, KINDS))
        try:
            info = self._components[(kind, name)]
        except KeyError:
            raise UnknownComponentError(unknown_component_message(self, kind, name)) from None
        if provider is None:
            return info
        for candidate in self.providers(kind, name):
            if provider in (candidate.distribution, candidate.plugin):
                return candidate
        offered = ", ".join(c.distribution or c.plugin for c in self.providers(kind, name))
        raise UnknownComponentError(
            f"{kind} {name!r} from {provider!r}: not installed; provided by: {offered}"
        )

    def providers(self, kind: str, name: str) -> list[ComponentInfo]:
        """Every plugin's registration of (kind, name): the default first, then the others."""
        if (kind, name) not in self._components:
            return []
        used = self._components[(kind, name)]
        return [used] + [c for c in self._providers[(kind, name)] if c is not used]

    def clash(self, kind: str, name: str) -> Clash | None:
        """The first clash on (kind, name), if two plugins registered it."""
        found = self.providers(kind, name)
        return Clash(kind, name, found[0], found[1]) if len(found) > 1 else None

    @property
    def clashes(self) -> list[Clash]:
        """Every name registered by more than one plugin (one entry per other provider)."""
        out = []
        for kind, name in self._providers:
            used, *others = self.providers(kind, name)
            out += [Clash(kind, name, used, other) for other in others]
        return out

    def names(self, kind: str) -> list[str]:
        """Registered names of one kind, sorted."""
        return sorted(n for k, n in self._components if k == kind)

    def components(self) -> list[ComponentInfo]:
        """Every registered component, sorted by kind order then name."""
        order = {k: i for i, k in enumerate(KINDS)}
        return sorted(self._components.values(), key=lambda c: (order[c.kind], c.name))

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every discovered plugin, including failed and disabled ones."""
        return list(self._plugins.values())

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._components


def _suggest(name: str, choices: Iterable[str]) -> str:
    best = closest(name, choices)
    return f". Did you mean {best!r}?" if best else ""


def unknown_component_message(registry: Registry, kind: str, name: str) -> str:
    """The message for an unknown name: what is registered and the closest match."""
    names = registry.names(kind)
    listed = ", ".join(names) if names else "none (is the plugin that provides it installed?)"
    message = f"unknown {kind} component {name!r}; registered: {listed}" + _suggest(name, names)
    failed = [p.name for p in registry.plugins if p.status == "failed"]
    if failed:
        message += f" (plugins that failed to load: {', '.join(failed)}; see `sigma plugins`)"
    return message


def _selected(ep: md.EntryPoint, dist: str | None, only: set[str] | None, deny: set[str]) -> bool:
    names = {ep.name, dist} - {None}
    if names & deny:
        return False
    return only is None or bool(names & only)


def load_registry(
    *,
    entry_points: bool = True,
    plugins: Iterable[object] = (),
    env: Mapping[str, str] | None = None,
    strict: bool | None = None,
) -> Registry:
    """Build a registry from installed entry points and/or explicit plugin objects.

    Args:
        entry_points: discover plugins in the ``sigma`` entry-point group.
        plugins: extra plugin objects (modules or instances), e.g. for hermetic tests.
        env: environment to read ``SIGMA_*`` switches from (default ``os.environ``).
        strict: re-raise plugin failures and name clashes (default:
            ``SIGMA_STRICT_PLUGINS``).

    ``SIGMA_PREFER_PLUGINS=a,b`` (plugin or distribution names) opts in globally
    to those plugins' registrations on a name clash, over Sigma's own.
    """
    env = os.environ if env is None else env
    strict = _truthy(env.get("SIGMA_STRICT_PLUGINS")) if strict is None else strict
    registry = Registry(prefer=_env_list(env, "SIGMA_PREFER_PLUGINS") or ())
    registry.trace = _truthy(env.get("SIGMA_TRACE_PLUGINS"))
    if entry_points:
        registry.discover(
            only=_env_list(env, "SIGMA_LOAD_PLUGINS"),
            deny=_env_list(env, "SIGMA_DISABLE_PLUGINS") or set(),
            strict=strict,
        )
    for plugin in plugins:
        registry.register_plugin(plugin, strict=strict)
    return registry


_REGISTRY: Registry | None = None


def get_registry(*, reload: bool = False) -> Registry:
    """The process-wide registry of installed plugins (built on first use)."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = load_registry()
    return _REGISTRY
