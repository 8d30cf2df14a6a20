"""The functions ``import ncood`` exports (timm/llm style): what a notebook needs to score
features, measure Neural Collapse and read runs without the command line.

    dump = ncood.load_features(path)
    ncood.list_scorers("maha*", needs_network=False)  # ['mahalanobis']
    vim = ncood.create_scorer("vim", dim=256)      # typed keyword arguments
    results = ncood.evaluate(dump, ["vim", "energy", "nc"], vim={"dim": 256})
    run = ncood.open_run("runs/tp-600")            # run.epochs, run.features(e), run.results_for(e)

They go through the same plugin host and code as ``ncood analyze``: ``--set`` is only a string
conversion in front of :meth:`Contribution.create <ncood.host.scoring.Contribution.create>`.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from ncood.host.loading import host
from ncood.store.features import FeatureDump, load_features
from ncood.store.run import RunDir


def list_scorers(
    pattern: str = "*", *, needs_network: bool | None = None, needs_members: bool | None = None
) -> list[str]:
    """Names of the loaded scorers matching a shell-style ``pattern``, sorted; with
    ``needs_network`` only those that run the network (True) or read features (False); with
    ``needs_members`` only those that score a seeds folder's runs as one ensemble (True) or
    one run (False)."""
    return [
        name
        for name, scorer in host().scorers().items()
        if fnmatch.fnmatch(name, pattern)
        and (needs_network is None or scorer.needs_network == needs_network)
        and (needs_members is None or scorer.needs_members == needs_members)
    ]


def list_analyses(pattern: str = "*") -> list[str]:
    """Names of the loaded analyses matching ``pattern``, sorted."""
    return host().analyses().names(pattern)


def create_scorer(name: str, **params: Any):
    """A new, unfitted scorer (:class:`ncood.Scorer`): ``fit(train, head)`` then
    ``score(split)``, or with ``needs_network`` ``fit(network, train)``, ``score(network, split)``.

    An unknown name or parameter is an :class:`~ncood.errors.NcoodError` listing the known ones.
    """
    return host().scorers().get(name).create(**params)


def create_analysis(name: str, **params: Any):
    """A new analysis: ``run(dump)`` returns its JSON-able dict."""
    return host().analyses().get(name).create(**params)


def evaluate(
    dump: FeatureDump | str | os.PathLike,
    names: list[str] | None = None,
    **params: dict[str, Any],
) -> dict[str, Any]:
    """What ``ncood analyze`` writes to results.json, for a dump or a features file.

    ``names`` picks scorers and analyses (default: all loaded); each keyword argument gives one
    of them its parameters (``vim={"dim": 256}``). A scorer or analysis that fails does not stop
    the others: its message is in ``results["errors"]``.
    """
    from ncood.analyze.driver import analyze_dump, select

    if not isinstance(dump, FeatureDump):
        dump = load_features(Path(dump))
    scorers, analyses = select(host(), names)
    return analyze_dump(dump, scorers, analyses, params).results


def open_run(path: str | os.PathLike) -> RunDir:
    """An existing run directory: ``epochs``, ``features(epoch)``, ``results_for(epoch)``,
    ``manifest()``, ``history()``."""
    return RunDir.open(path)
