"""Loading plugins and collecting what they contribute.

Built-ins and third-party packages load the same way: entry points of the group ``ncood``.
``NCOOD_LOAD_PLUGINS`` (comma-separated entry-point names) restricts which *third-party*
plugins load; set it to the empty string to load the built-ins only.

Entry points are imported when a hook is first needed, not at start-up: one whose name starts
with ``scorers.``, ``analyses.`` or ``sections.`` declares it implements only that group's hook
(the built-ins are named so), and is imported only for it — ``ncood analyze`` never imports
the report sections. Any other entry point is imported for every hook.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from ncood.errors import NcoodError
from ncood.host import hookspecs
from ncood.host.models import ModelEntry, ModelRegistry
from ncood.host.registry import Registry
from ncood.host.scoring import FAMILIES, Contribution

ENTRY_POINT_GROUP = "ncood"
LOAD_ENV_VAR = "NCOOD_LOAD_PLUGINS"
BUILTIN_DISTRIBUTION = "ncood"
# The entry-point name prefix that promises a plugin implements one hook only.
GROUP_OF_HOOK = {
    "register_scorers": "scorers",
    "register_analyses": "analyses",
    "register_report_sections": "sections",
    "register_models": "models",
}
_BROKEN = object()  # what PluginHost._contained returns for a plugin that failed


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    error: str = ""  # why the plugin is broken (failed to import or to register); "" if fine


class PluginHost:
    """One pluggy manager plus what each registered plugin is."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("ncood")
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.pending: list[EntryPoint] = []  # found, not imported yet (see load)

    def add(self, plugin: object, name: str, *, distribution: str, version: str, builtin: bool):
        if self.pm.get_plugin(name) is not None:
            raise NcoodError(f"two plugins are named {name!r}")
        self.pm.register(plugin, name=name)
        self.info[name] = PluginInfo(name, distribution, version, builtin)

    def remove(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.info.pop(name, None)

    def load_entry_points(self) -> None:
        """Find the entry points to load (imported later, by :meth:`load`)."""
        wanted = os.environ.get(LOAD_ENV_VAR)
        allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
        seen = {ep.name for ep in self.pending}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if not _is_builtin(ep) and allowed is not None and ep.name not in allowed:
                continue
            if ep.name in seen or self.pm.get_plugin(ep.name) is not None:
                continue  # the same distribution seen twice on sys.path
            seen.add(ep.name)
            self.pending.append(ep)

    def load(self, hook_name: str | None = None) -> None:
        """Import the pending entry points that may implement ``hook_name`` (all for None)."""
        group = GROUP_OF_HOOK.get(hook_name) if hook_name else None
        for ep in list(self.pending):
            declared = declared_group(ep.name)
            if group is not None and declared is not None and declared != group:
                continue
            self.pending.remove(ep)
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else "?"
            builtin = _is_builtin(ep)
            self.info[ep.name] = PluginInfo(ep.name, dist, version, builtin)  # named if broken
            plugin = self._contained(ep.name, "failed to import", ep.load)
            if plugin is _BROKEN:
                continue
            self.add(plugin, ep.name, distribution=dist, version=version, builtin=builtin)
            if declared is not None:
                self._check_declared(ep.name, declared)

    def _check_declared(self, name: str, group: str) -> None:
        """A plugin named ``<group>.…`` is loaded for that group's hook only: it may not
        implement another (it would be missed, or not, depending on the command)."""
        hooks = {c.name for c in self.pm.get_hookcallers(self.pm.get_plugin(name)) or []}
        others = sorted(hooks - {h for h, g in GROUP_OF_HOOK.items() if g == group})
        if others:
            self.remove(name)
            raise NcoodError(
                f"plugin {name!r} is named for {group!r} but implements {', '.join(others)}; "
                f"name its entry point without the {group + '.'!r} prefix"
            )

    def broken(self) -> list[PluginInfo]:
        """Plugins that failed to import or to register what they contribute."""
        return [info for info in self.info.values() if info.error]

    def plugins(self) -> list[PluginInfo]:
        self.load()
        for name, info in self.info.items():
            plugin = self.pm.get_plugin(name)
            if plugin is None:  # failed to import
                info.hooks = []
                continue
            info.hooks = sorted(
                caller.name
                for caller in self.pm.get_hookcallers(plugin) or []
                if caller.name.startswith("register_")
            )
        return sorted(self.info.values(), key=lambda i: (not i.builtin, i.name))

    def _collect(self, hook_name: str, make: Callable[[str, Any], Any], kind: str) -> Registry:
        self.load(hook_name)
        registry: Registry = Registry(kind)
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            if impl.plugin_name in self.info and self.info[impl.plugin_name].error:
                continue
            offered: list[Any] = []

            def register(*args, _plugin=impl.plugin_name, _offered=offered, **kwargs):
                _offered.append(make(_plugin, *args, **kwargs))

            def run(_function=impl.function, _register=register, _offered=offered) -> None:
                _function(register=_register)
                names = [item.name for item in _offered]
                for name in names:
                    if not name or not isinstance(name, str):
                        raise ValueError(f"a {kind} needs a non-empty string name, got {name!r}")
                    if name in registry or names.count(name) > 1:
                        raise ValueError(f"{kind} {name!r} is registered twice")

            if self._contained(impl.plugin_name, f"{hook_name} failed", run) is _BROKEN:
                continue  # this plugin is broken; the others still work
            for item in offered:
                registry.add(item.name, item)
        return registry

    def scorers(self) -> Registry[Contribution]:
        """Every scorer, feature-level and network (``Contribution.needs_network``) alike."""
        return self._collect("register_scorers", _contribution("scorer"), "scorer")

    def analyses(self) -> Registry[Contribution]:
        return self._collect("register_analyses", _contribution("analysis"), "analysis")

    def report_sections(self) -> Registry:
        def make(plugin: str, section):
            section.plugin = plugin
            return section

        return self._collect("register_report_sections", make, "report section")

    def models(self) -> ModelRegistry:
        """The architectures ``ncood extract`` builds (ncood.models.registry names them)."""

        def make(plugin: str, name, builder, description: str = "") -> ModelEntry:
            return ModelRegistry().register(name, builder, description, plugin=plugin)  # checks

        registry = ModelRegistry()
        for name, entry in self._collect("register_models", make, "model").items():
            registry.register(name, entry.builder, entry.description, plugin=entry.plugin)
        return registry

    def _contained(self, plugin: str, failing: str, call: Callable[[], Any]) -> Any:
        """``call()``, one plugin's code: whatever it raises (``sys.exit`` too; Ctrl-C passes)
        marks that plugin broken with one line, ``"<failing>: <why>"``, and costs no other
        plugin. Returns what ``call`` returns, or :data:`_BROKEN`."""
        try:
            return call()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            info = self.info.get(plugin)
            if info is None:  # registered past the host: nothing to mark, so it is an error
                raise NcoodError(f"plugin {plugin!r}: {describe(exc)}") from None
            info.error = f"{failing}: {describe(exc)}"
            return _BROKEN


def declared_group(entry_point_name: str) -> str | None:
    """``"scorers"`` for ``"scorers.vim"``; None for a name that declares no group."""
    prefix, dot, _ = entry_point_name.partition(".")
    return prefix if dot and prefix in GROUP_OF_HOOK.values() else None


def _is_builtin(ep: EntryPoint) -> bool:
    return ep.dist is not None and ep.dist.name == BUILTIN_DISTRIBUTION


def _contribution(kind: str):
    def make(
        plugin: str,
        name: str,
        factory: Callable[..., Any],
        description: str = "",
        title: str = "",
        family: str = "",
    ):
        if family and family not in FAMILIES:
            raise ValueError(f"{kind} {name!r}: family {family!r} is not one of {FAMILIES}")
        made = Contribution(name, factory, description, plugin, kind, title, family)
        return replace(made, family="model") if made.needs_network and not family else made

    return make


@functools.cache
def host() -> PluginHost:
    """The process-wide plugin host; its plugins are imported as hooks are first called."""
    plugin_host = PluginHost()
    plugin_host.load_entry_points()
    return plugin_host


def describe(exc: BaseException) -> str:
    """One line for what a plugin raised: a user error's message, else the type and message
    (``sys.exit`` from a plugin reads as such, not as an exit of ncood)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    if isinstance(exc, NcoodError):
        return str(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
