"""The training engine: model, data, presets, the training loop and the features dump at each
checkpoint (ncood.engine.dump).

It writes runs through :mod:`ncood.store`, names presets in a :mod:`ncood.host` registry and
reads :mod:`ncood.datasets`; it may also import ``ncood`` (the version), :mod:`ncood.progress`
and :mod:`ncood.errors`, and never the analysis, the report or the command line.
"""
