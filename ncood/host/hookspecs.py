"""The hooks a plugin may implement. Markers and empty specs only: no logic lives here."""

import pluggy

hookspec = pluggy.HookspecMarker("ncood")
hookimpl = pluggy.HookimplMarker("ncood")


@hookspec
def register_scorers(register):
    """Register OOD scorers (:class:`ncood.Scorer`, on features or, with ``needs_network``,
    through the network): ``register(name, factory, description="", title="", family="")``."""


@hookspec
def register_analyses(register):
    """Register analyses of a features dump: ``register(name, factory, description="")``."""


@hookspec
def register_report_sections(register):
    """Register report sections: ``register(ReportSection(...))``."""


@hookspec
def register_models(register):
    """Register model architectures: ``register(name, builder, description="")``."""


@hookspec
def register_datasets(register):
    """Register datasets by name: ``register(name, load=None, description="", *, ood=None)``,
    ``load(context)`` for ``--dataset``, ``ood(context, ind)`` for ``--ood``."""


@hookspec
def register_presets(register):
    """Register training presets: ``register(config, description="")``, a ``TrainConfig``
    named by its ``preset`` field."""
