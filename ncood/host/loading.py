"""Loading plugins and collecting what they contribute.

The built-ins are the modules of :data:`DEFAULT_PLUGINS` (llm's ``DEFAULT_PLUGINS``), found
at start-up and registered through the same hooks as a third-party package, which is found
through an entry point of the group ``ncood``. A new built-in file is one line in that tuple.
``NCOOD_LOAD_PLUGINS`` (comma-separated entry-point names) restricts which *third-party*
plugins load; set it to the empty string to load the built-ins only.

Plugins are imported when a hook is first needed, not at start-up: one whose name starts with
``scorers.``, ``analyses.``, ``sections.``, ``models.``, ``datasets.`` or ``presets.`` declares
it implements only that group's hooks (the built-ins are named after their path under
plugins/, so they all do), and is imported only for them — ``ncood analyze`` never imports
the report sections. Any other entry point is imported for every hook.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from typing import Any

import pluggy

from ncood.errors import NcoodError
from ncood.host import hookspecs
from ncood.host.entries import DatasetEntry, Preset
from ncood.host.guard import call_plugin
from ncood.host.model_registry import ModelEntry, ModelRegistry
from ncood.host.registry import Registry
from ncood.host.scoring import FAMILIES, Contribution

ENTRY_POINT_GROUP = "ncood"
LOAD_ENV_VAR = "NCOOD_LOAD_PLUGINS"
BUILTIN_DISTRIBUTION = "ncood"
BUILTIN_PACKAGE = "ncood_plugins"  # plugins/, as installed
# The built-in plugins: ``ncood_plugins.<name>``, each in the folder of the hooks it implements.
DEFAULT_PLUGINS = (
    "scorers.logits",
    "scorers.ensemble",
    "scorers.mahalanobis",
    "scorers.layers",
    "scorers.vim",
    "scorers.neco",
    "scorers.knn",
    "scorers.react",
    "scorers.nc_geometry",
    "scorers.softmax_shapes",
    "scorers.shaping",
    "scorers.gradnorm",
    "scorers.density",
    "scorers.class_means",
    "scorers.relation",
    "scorers.logit_scaling",
    "scorers.pnml",
    "scorers.grad_uncertainty",
    "scorers.odin",
    "scorers.mcd",
    "scorers.gram",
    "scorers.rankfeat",
    "scorers.nac",
    "scorers.mahalanobis_odin",
    "scorers.adascale",
    "scorers.iodin",
    "analyses.neural_collapse",
    "sections.intro",
    "sections.training",
    "sections.ood",
    "sections.nc",
    "sections.nc5",
    "sections.neco",
    "sections.collapse_control",
    "sections.appendix",
    "models.resnet_cifar",
    "models.openood",
    "models.torchvision",
    "models.timm",
    "datasets.embedded",
    "datasets.torchvision",
    "datasets.openood",
    "presets.demo",
    "presets.tp",
)
# The name prefix that promises a plugin implements only that group's hooks.
GROUP_OF_HOOK = {
    "register_scorers": "scorers",
    "register_analyses": "analyses",
    "register_report_sections": "sections",
    "register_models": "models",
    "register_datasets": "datasets",
    "register_presets": "presets",
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


@dataclass(frozen=True)
class Pending:
    """A plugin found and not imported yet: ``load()`` imports it (see PluginHost.load)."""

    name: str
    load: Callable[[], object]
    distribution: str
    version: str
    builtin: bool = False

    @classmethod
    def builtin_module(cls, name: str, version: str) -> Pending:
        module = f"{BUILTIN_PACKAGE}.{name}"
        load = functools.partial(importlib.import_module, module)
        return cls(name, load, BUILTIN_DISTRIBUTION, version, builtin=True)

    @classmethod
    def entry_point(cls, ep: EntryPoint) -> Pending:
        if ep.dist is None:
            return cls(ep.name, ep.load, "unknown", "?")
        return cls(ep.name, ep.load, ep.dist.name, ep.dist.version)


class PluginHost:
    """One pluggy manager plus what each registered plugin is."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("ncood")
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.pending: list[Pending] = []  # found, not imported yet (see load)

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

    def find_plugins(self) -> None:
        """The built-ins, then the third-party entry points allowed by ``NCOOD_LOAD_PLUGINS``
        (imported later, by :meth:`load`)."""
        seen = {p.name for p in self.pending} | set(self.info)
        own_version = _own_version()
        found = [Pending.builtin_module(name, own_version) for name in DEFAULT_PLUGINS]
        wanted = os.environ.get(LOAD_ENV_VAR)
        allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.dist is not None and ep.dist.name == BUILTIN_DISTRIBUTION:
                continue  # an older install's entry point for a built-in
            if allowed is None or ep.name in allowed:
                found.append(Pending.entry_point(ep))
        for plugin in found:
            if plugin.name in seen or self.pm.get_plugin(plugin.name) is not None:
                continue  # a built-in's name, or the same distribution seen twice on sys.path
            seen.add(plugin.name)
            self.pending.append(plugin)

    def load(self, hook_name: str | None = None) -> None:
        """Import the pending plugins that may implement ``hook_name`` (all for None)."""
        group = GROUP_OF_HOOK.get(hook_name) if hook_name else None
        for found in list(self.pending):
            declared = declared_group(found.name)
            if group is not None and declared is not None and declared != group:
                continue
            self.pending.remove(found)
            info = PluginInfo(found.name, found.distribution, found.version, found.builtin)
            self.info[found.name] = info  # named if broken
            plugin = self._contained(found.name, "failed to import", found.load)
            if plugin is _BROKEN:
                continue
            self.add(
                plugin,
                found.name,
                distribution=found.distribution,
                version=found.version,
                builtin=found.builtin,
            )
            if declared is not None:
                self._check_declared(found.name, declared)

    def _check_declared(self, name: str, group: str) -> None:
        """A plugin named ``<group>.…`` is loaded for that group's hook only: it may not
        implement another (it would be missed, or not, depending on the command). One that
        does is broken, unregistered; the others go on."""
        plugin = self.pm.get_plugin(name)
        hooks = {c.name for c in self.pm.get_hookcallers(plugin) or []}
        others = sorted(hooks - {h for h, g in GROUP_OF_HOOK.items() if g == group})
        if others:
            self.pm.unregister(plugin)
            self.info[name].error = (
                f"named for {group!r} but implements {', '.join(others)}; name its entry "
                f"point without the {group + '.'!r} prefix"
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

    def _collect(
        self,
        hook_name: str,
        make: Callable[..., Any],
        kind: str,
        registry_type: type[Registry] = Registry,
    ) -> Registry:
        """One registry of what every loaded plugin registers through ``hook_name``: ``make``
        turns a ``register(...)`` call into the item; a plugin whose hook raises, or whose
        names the registry refuses, is broken and contributes nothing."""
        self.load(hook_name)
        registry = registry_type(kind)
        impls = list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))
        # the built-ins first: a name a built-in registers stays its, whatever else is installed
        impls.sort(key=lambda impl: not getattr(self.info.get(impl.plugin_name), "builtin", False))
        for impl in impls:
            if impl.plugin_name in self.info and self.info[impl.plugin_name].error:
                continue
            offered: list[Any] = []

            def register(*args, _plugin=impl.plugin_name, _offered=offered, **kwargs):
                _offered.append(make(_plugin, *args, **kwargs))

            def run(_function=impl.function, _register=register, _offered=offered) -> None:
                _function(register=_register)
                names = [item.name for item in _offered]
                for name in names:
                    registry.check_name(name)
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
            return ModelEntry(name, builder, description, plugin)

        return self._collect("register_models", make, "model", ModelRegistry)

    def datasets(self) -> Registry[DatasetEntry]:
        """The datasets ``--dataset`` and ``--ood`` name (ncood.datasets.loading reads them)."""

        def make(plugin: str, name, load=None, description: str = "", *, ood=None):
            return DatasetEntry(name, load, ood, description, plugin)

        return self._collect("register_datasets", make, "dataset")

    def presets(self) -> Registry[Preset]:
        """The named training configurations (ncood.engine.presets resolves them)."""

        def make(plugin: str, config, description: str = "") -> Preset:
            return Preset(getattr(config, "preset", None), config, description, plugin)

        return self._collect("register_presets", make, "preset")

    def _contained(self, plugin: str, failing: str, call: Callable[[], Any]) -> Any:
        """``call()``, one plugin's code: whatever it raises (``sys.exit`` too; Ctrl-C passes)
        marks that plugin broken with one line, ``"<failing>: <why>"``, and costs no other
        plugin. Returns what ``call`` returns, or :data:`_BROKEN`."""
        called = call_plugin(call)
        if not called.failed:
            return called.value
        info = self.info.get(plugin)
        if info is None:  # registered past the host: nothing to mark, so it is an error
            raise NcoodError(f"plugin {plugin!r}: {called.reason}") from None
        info.error = f"{failing}: {called.reason}"
        return _BROKEN


def declared_group(entry_point_name: str) -> str | None:
    """``"scorers"`` for ``"scorers.vim"``; None for a name that declares no group."""
    prefix, dot, _ = entry_point_name.partition(".")
    return prefix if dot and prefix in GROUP_OF_HOOK.values() else None


def _own_version() -> str:
    """ncood's version, which the built-ins share (as ``ncood.__version__`` reads it)."""
    try:
        return version(BUILTIN_DISTRIBUTION)
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+source"


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
    plugin_host.find_plugins()
    return plugin_host
