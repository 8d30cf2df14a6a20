"""``ncood analyze``: fit each scorer on ID train, score test and every OOD set, run analyses.

A scorer or analysis that raises anything (``sys.exit`` included; only Ctrl-C passes) does not
stop the others: its error is recorded in results.json and the caller reports a non-zero exit.
What a plugin returns is checked and converted to JSON here, at the boundary (numpy scalars to
numbers, NaN/Inf to null), so one plugin's odd value cannot lose the others' results. The
results of an epoch are merged per plugin with those already there (ncood.store.result_merge).

A network scorer (one whose ``needs_network`` is true, ncood.host.scoring.Scorer) runs through
the network the caller rebuilds (``model_inputs``, built once per dump, when the first of them
runs); its scores join the others' and every statistic treats them alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ncood.analyze.options import OodOptions
from ncood.errors import NcoodError, warn
from ncood.host.guard import Called, call_plugin, describe
from ncood.host.loading import PluginHost
from ncood.host.memory_budget import budget_bytes, refusal
from ncood.host.network_state import Pristine
from ncood.host.scoring import Contribution, DumpShape, needs_network
from ncood.ood.conventions import ood_metrics
from ncood.ood.spread import spread, warn_spread
from ncood.ood.statistics import add_statistics
from ncood.ood.tuning import tune
from ncood.store.arrays_file import arrays_path, save_arrays
from ncood.store.features import FeatureDump, load_features
from ncood.store.plugin_output import RESERVED_KEYS, to_json
from ncood.store.result_merge import write_merged

if TYPE_CHECKING:
    from collections.abc import Callable

    from ncood.host.network import ModelInputs


EVERYTHING = "all"  # --plugins all: every scorer, model-based ones included, and every analysis
# params.<model-based scorer>.network: how the network ran (device, precision, batch size,
# weights), recorded beside the scorer's own parameters
NETWORK_KEY = "network"


@dataclass
class AnalysisOutcome:
    results: dict[str, Any]
    scores: dict[str, dict[str, np.ndarray]] = field(
        default_factory=dict
    )  # scorer → split → scores
    failures: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # failed, but their previous result stays

    def reasons(self) -> dict[str, str]:
        return {name: self.results["errors"].get(name, "?") for name in self.failures}

    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # analysis → arrays


def select(
    host: PluginHost, names: list[str] | None, *, members: bool = False
) -> tuple[list[Contribution], list[Contribution]]:
    """Split the requested names into scorers and analyses; unknown names list what exists.

    Without names: every feature-level scorer and every analysis. Network scorers run the
    network over every image (slow on a CPU), so they run when named, or with ``all``.
    Ensemble scorers (``needs_members``) run on a seeds folder (``members``), and only they.
    """
    scorers, analyses = host.scorers(), host.analyses()
    if members:
        return _select_ensemble(scorers, names), []
    on_features = [s for _, s in scorers.items() if not s.needs_network and not s.needs_members]
    every_analysis = [a for _, a in analyses.items()]
    if not names:
        return on_features, every_analysis
    if names == [EVERYTHING]:  # the network scorers after the others, as results.json lists them
        networked = [s for _, s in scorers.items() if s.needs_network and not s.needs_members]
        return on_features + networked, every_analysis
    chosen_scorers, chosen_analyses = [], []
    for name in names:
        if name in scorers and scorers.get(name).needs_members:
            raise NcoodError(
                f"{name} scores the runs of an ensemble: analyze the folder that "
                f"`ncood train --seeds` wrote (ncood analyze OUT), not one run"
            )
        if name in scorers:
            chosen_scorers.append(scorers.get(name))
        elif name in analyses:
            chosen_analyses.append(analyses.get(name))
        else:
            known = ", ".join(sorted([*scorers.names(), *analyses.names()]))
            broken = ", ".join(sorted(info.name for info in host.broken()))
            raise NcoodError(
                f"unknown plugin {name!r} (known: {known}"
                + (f"; broken plugins, see `ncood plugins`: {broken})" if broken else ")")
            )
    return chosen_scorers, chosen_analyses


def _select_ensemble(scorers, names: list[str] | None) -> list[Contribution]:
    """On a seeds folder: the ensemble scorers, or those named (only they apply there)."""
    ensemble = [s for _, s in scorers.items() if s.needs_members]
    if not names or names == [EVERYTHING]:
        if not ensemble:
            raise NcoodError("no ensemble scorer is loaded (see `ncood plugins`)")
        return ensemble
    chosen = []
    for name in names:
        if name not in scorers or not scorers.get(name).needs_members:
            known = ", ".join(s.name for s in ensemble) or "none loaded"
            raise NcoodError(
                f"{name!r} is not an ensemble scorer; a seeds folder is analyzed with those "
                f"({known}), each run on its own with `ncood analyze OUT/seed-N`"
            )
        chosen.append(scorers.get(name))
    return chosen


def check_settings(settings: dict[str, dict[str, str]], chosen: list[Contribution]) -> None:
    names = {c.name for c in chosen}
    for name in settings:
        if name not in names:
            raise NcoodError(
                f"--set names {name!r}, which is not among the selected plugins "
                f"({', '.join(sorted(names))})"
            )


def check_parameters(settings: dict[str, dict[str, str]], chosen: list[Contribution]) -> None:
    """Every ``--set`` value checked by building each plugin once, before any data is read: a
    value its factory refuses (mcd.samples=10⁹) is one line up front. A factory that breaks
    otherwise is left to fail its own plugin when the analysis runs."""
    check_settings(settings, chosen)
    for contribution in chosen:
        call_plugin(contribution.build, settings.get(contribution.name), passes=(NcoodError,))


def analyze_dump(
    dump: FeatureDump,
    scorers: list[Contribution],
    analyses: list[Contribution],
    settings: dict[str, dict[str, str]] | None = None,
    *,
    options: OodOptions | None = None,
    on_step=None,
    model_inputs: Callable[[], ModelInputs] | None = None,
) -> AnalysisOutcome:
    settings = settings or {}
    options = options or OodOptions()
    check_settings(settings, [*scorers, *analyses])
    check_model_scorers(scorers, model_inputs is not None, options)
    test_sets = options.check(list(dump.ood))
    tuning = None
    if options.tune:
        settings, tuning = tune(
            dump,
            scorers,
            options.tune,
            settings,
            options.tune_on,
            fraction=options.tune_fraction,
            seed=options.tune_seed,
        )
    dump = replace(dump, ood={name: dump.ood[name] for name in test_sets})
    outcome = AnalysisOutcome(
        results={
            "ood": {name: {} for name in dump.ood},
            "params": {},
            "timings": {},
            "errors": {},
            "test": {"num_classes": dump.num_classes, "feature_dim": dump.feature_dim},
        }
    )
    if tuning is not None:
        outcome.results["tuning"] = tuning
    built: dict[str, Any] = {}
    for contribution in [*scorers, *analyses]:  # a bad --set fails before any work
        called = call_plugin(
            contribution.build, settings.get(contribution.name), passes=(NcoodError,)
        )
        if called.failed:  # the factory itself is broken: only this plugin fails
            built[contribution.name] = called.error
            continue
        built[contribution.name], params = called.value
        try:
            outcome.results["params"][contribution.name] = to_json(params, "its parameters")
        except NcoodError as exc:
            built[contribution.name] = exc
    refuse_oversized(scorers, built, dump, options.memory_budget)
    network = _Once(model_inputs)
    for contribution in scorers:
        _run_guarded(contribution, built, dump, outcome, on_step, network)
        built.pop(contribution.name)  # its fitted state goes: only its scores are kept
    started = time.perf_counter()
    try:
        add_statistics(
            outcome.results,
            outcome.scores,
            resamples=options.bootstrap,
            seed=options.bootstrap_seed,
            groups=options.test_sets.groups if options.test_sets else None,
        )
    except Exception as exc:  # intervals are extra: their failure keeps the point values
        outcome.results["errors"]["statistics"] = describe(exc)
        outcome.failures.append("statistics")
    outcome.results["timings"]["statistics"] = time.perf_counter() - started
    for contribution in analyses:
        _run_guarded(contribution, built, dump, outcome, on_step)
    return outcome


def dump_shape(dump: FeatureDump) -> DumpShape:
    scored = [len(dump.test), *(len(split) for split in dump.ood.values())]
    return DumpShape(len(dump.train), dump.feature_dim, dump.num_classes, max(scored))


def refuse_oversized(
    scorers: list[Contribution], built: dict[str, Any], dump: FeatureDump, budget_gib
) -> None:
    """Each feature scorer whose own memory estimate exceeds the budget fails now, in one line
    (said at once, recorded as its error), before any scorer is fitted; the others run."""
    shape, budget = dump_shape(dump), budget_bytes(budget_gib)
    for contribution in scorers:
        instance = built[contribution.name]
        if contribution.needs_network or isinstance(instance, BaseException):
            continue
        called = call_plugin(refusal, contribution.name, instance, shape, budget)
        reason = called.error if called.failed else called.value
        if reason is None:
            continue
        if not isinstance(reason, BaseException):
            warn(f"{contribution.name}: {reason}")
            reason = NcoodError(reason)
        built[contribution.name] = reason


def check_model_scorers(
    scorers: list[Contribution], has_network: bool, options: OodOptions | None = None
) -> None:
    """Model-based scorers need a run's network, and --tune tunes feature-level ones only."""
    on_model = [c.name for c in scorers if c.needs_network]
    if on_model and not has_network:
        raise NcoodError(
            f"{', '.join(on_model)} {'needs' if len(on_model) == 1 else 'need'} the network, "
            f"and a features file holds none: analyze the run directory (a trained run, or one "
            f"imported with ncood extract)"
        )
    tuned = [name for name in (options.tune if options else {}) if name in on_model]
    if tuned:
        raise NcoodError(
            f"--tune chooses the parameters of feature-level scorers; {tuned[0]!r} is model-based"
        )


class _Once:
    """The model inputs, built when the first model-based scorer runs; a failure to build
    them is each model-based scorer's failure (the others go on). Each scorer gets the network
    as it was loaded: :meth:`put_back` undoes what the last one left changed."""

    def __init__(self, build: Callable[[], ModelInputs] | None) -> None:
        self.build, self.value, self.error = build, None, None
        self.pristine: Pristine | None = None

    def __call__(self) -> ModelInputs:
        if self.error is not None:
            raise self.error
        if self.value is None:
            try:
                self.value = self.build()
                self.pristine = Pristine.of(self.value.network.module)
            except Exception as exc:
                self.value, self.error = None, exc
                raise
        return self.value

    def put_back(self) -> str:
        """What the scorer that just ran left changed in the network ("" if nothing); the next
        one gets the network as loaded (restored in place, else rebuilt)."""
        if self.value is None or self.pristine is None:
            return ""
        module = self.value.network.module
        try:
            changed = self.pristine.changes(module)
            restored = not changed or (
                self.pristine.restore(module) and not self.pristine.changes(module)
            )
        except Exception as exc:  # a network too damaged to compare: built again
            changed, restored = f"it cannot be compared any more: {describe(exc)}", False
        if not restored:
            self.value = self.pristine = None  # not restorable in place: built again when needed
        return changed


def _run_guarded(
    contribution: Contribution, built: dict, dump, outcome, on_step, network=None
) -> None:
    """One plugin; whatever it raises (even sys.exit) costs only itself. Ctrl-C passes. A
    model-based scorer that leaves the network changed fails (the next gets it as loaded)."""
    started = time.perf_counter()
    instance = built[contribution.name]
    called = (
        Called(error=instance)
        if isinstance(instance, BaseException)
        else call_plugin(_run_one, contribution, instance, dump, outcome, network)
    )
    if called.failed:
        _fail(outcome, contribution, called.reason)
    if contribution.needs_network and network is not None:
        changed = network.put_back()
        if changed:
            reason = f"it left the network changed ({changed}); the next scorers get it as loaded"
            if contribution.name in outcome.failures:
                outcome.results["errors"][contribution.name] += f"; {reason}"
            else:
                _fail(outcome, contribution, reason)
    outcome.results["timings"][contribution.name] = time.perf_counter() - started
    if on_step:
        on_step(contribution.name)


def _fail(outcome: AnalysisOutcome, contribution: Contribution, reason: str) -> None:
    outcome.results["errors"][contribution.name] = reason
    outcome.failures.append(contribution.name)
    outcome.scores.pop(contribution.name, None)
    for per_scorer in outcome.results["ood"].values():
        per_scorer.pop(contribution.name, None)
    if contribution.kind == "analysis" and contribution.name not in RESERVED_KEYS:
        outcome.results.pop(contribution.name, None)


def _run_one(contribution: Contribution, built, dump: FeatureDump, outcome, network) -> None:
    if contribution.kind == "scorer":
        resolved = {}
        if needs_network(built) != contribution.needs_network:
            raise NcoodError(
                f"its factory and the scorer it built disagree on needs_network: give the "
                f"factory the scorer's needs_network = {needs_network(built)}"
            )
        if needs_network(built):
            if NETWORK_KEY in outcome.results["params"][contribution.name]:
                raise NcoodError(
                    f"a model-based scorer may not have a parameter named {NETWORK_KEY!r} "
                    f"(results.json records how the network ran there)"
                )
            inputs = network()
            per_split = fit_and_score_model(built, inputs, dump)
            resolved[NETWORK_KEY] = inputs.describe
        else:
            per_split = fit_and_score(built, dump)
        if isinstance(getattr(built, "resolved_params", None), dict):
            resolved.update(built.resolved_params)
        outcome.results["params"][contribution.name].update(to_json(resolved, "resolved_params"))
        flagged: dict[str, dict[str, Any]] = {}
        for ood_name in dump.ood:
            test, ood = per_split["test"], per_split[f"ood/{ood_name}"]
            metrics = ood_metrics(test, ood)
            flagged[ood_name] = spread(test, ood)
            metrics.update(flagged[ood_name])
            outcome.results["ood"][ood_name][contribution.name] = metrics
        warn_spread(contribution.name, flagged)
        outcome.scores[contribution.name] = per_split
        return
    if contribution.name in RESERVED_KEYS:
        raise NcoodError(f"an analysis may not be named {contribution.name!r} (reserved)")
    returned = built.run(dump)
    if not isinstance(returned, dict):
        raise NcoodError(f"run() returned a {type(returned).__name__}, not a dict")
    outcome.results[contribution.name] = to_json(returned, "run()")
    arrays = getattr(built, "arrays", None)
    if isinstance(arrays, dict) and arrays:
        outcome.arrays[contribution.name] = arrays


def fit_and_score(scorer, dump: FeatureDump) -> dict[str, np.ndarray]:
    """Fit on ID train, score ID test and every OOD set; check each result is N finite floats."""
    scorer.fit(dump.train, dump.head)
    return {name: _checked(scorer.score(split), name, len(split)) for name, split in _scored(dump)}


def fit_and_score_model(scorer, inputs: ModelInputs, dump: FeatureDump) -> dict[str, np.ndarray]:
    """The same for a model-based scorer, on the batches of the images the dump describes."""
    for name, split in [("train", dump.train), *_scored(dump)]:
        batches = inputs.splits.get(name)
        if batches is None:
            raise NcoodError(f"the run's data has no split {name!r}, which the features have")
        if not np.array_equal(batches.labels, np.asarray(split.labels)):
            raise NcoodError(
                f"the images of split {name!r} are not those of the features file (their "
                f"labels differ): give --data-dir the data the run was made from"
            )
    network = replace(inputs.network, stages=list(inputs.network.stages))  # its own fields
    with inputs.precision():
        scorer.fit(network, inputs.splits["train"])
        return {
            name: _checked(scorer.score(network, inputs.splits[name]), name, len(split))
            for name, split in _scored(dump)
        }


def _scored(dump: FeatureDump) -> list[tuple[str, Any]]:
    return [("test", dump.test)] + [(f"ood/{name}", split) for name, split in dump.ood.items()]


def _checked(returned, split_name: str, count: int) -> np.ndarray:
    """What score() returned as N finite float64 values, or a one-line error."""
    try:
        values = np.asarray(
            returned.detach().cpu().double() if hasattr(returned, "detach") else returned,
            dtype=np.float64,
        )
    except (TypeError, ValueError) as exc:
        raise NcoodError(f"score() returned something that is not numbers ({exc})") from None
    if values.shape != (count,):
        raise NcoodError(
            f"score() returned shape {values.shape} for split {split_name!r}, expected ({count},)"
        )
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise NcoodError(f"score() returned {bad} non-finite values for split {split_name!r}")
    return values


def analyze_file(
    features_path: Path | list[Path],
    out_dir: Path | None,
    scorers: list[Contribution],
    analyses: list[Contribution],
    settings: dict[str, dict[str, str]] | None = None,
    *,
    options: OodOptions | None = None,
    on_step=None,
    discard_failed: bool = False,
    model_inputs: Callable[[], ModelInputs] | None = None,
) -> AnalysisOutcome:
    """Analyze one features file (or the members' files of an ensemble, one per run, joined
    by :func:`ncood.store.members.join_members`); merge its results (and scores) into
    ``out_dir``'s."""
    if isinstance(features_path, list):
        from ncood.store.members import join_members

        dump = join_members([load_features(path) for path in features_path])
    else:
        dump = load_features(features_path)
    outcome = analyze_dump(
        dump,
        scorers,
        analyses,
        settings,
        options=options,
        on_step=on_step,
        model_inputs=model_inputs,
    )
    outcome.results["features"] = (
        ", ".join(map(str, features_path))
        if isinstance(features_path, list)
        else str(features_path)
    )
    if "epoch" in dump.metadata:
        outcome.results["epoch"] = int(dump.metadata["epoch"])
    if out_dir is not None:
        outcome.results, outcome.kept = write_merged(
            out_dir,
            outcome.results,
            outcome.scores,
            outcome.failures,
            discard_failed,
            refresh=_statistics_over_all(outcome, options or OodOptions()),
        )
        for name, arrays in outcome.arrays.items():
            if name not in outcome.failures:
                save_arrays(arrays_path(out_dir, name), arrays)
    return outcome


def _statistics_over_all(outcome: AnalysisOutcome, options: OodOptions):
    """When the merge keeps scorers of earlier runs, their intervals, the DeLong pairs and the
    group means are recomputed over every scorer present (same seed: the same resamples); if
    that fails, no comparison is kept (this run's own covers only part of the scorers)."""

    def refresh(merged: dict[str, Any], scores: dict[str, dict[str, np.ndarray]]) -> None:
        if set(scores) == set(outcome.scores):
            return  # nothing kept from before: this run's statistics already cover it all
        try:
            add_statistics(
                merged,
                scores,
                resamples=options.bootstrap,
                seed=options.bootstrap_seed,
                groups=options.test_sets.groups if options.test_sets else None,
            )
        except Exception as exc:  # intervals are extra: their failure keeps the point values
            merged.setdefault("errors", {})["statistics"] = describe(exc)
            for key in ("significance", "ood_groups"):  # this run's: over part of the scorers
                merged.pop(key, None)

    return refresh


def has_stages(features_path: Path | list[Path]) -> bool:
    """Whether a features file holds each stage's features (``train/layers/<stage>``)."""
    from safetensors import safe_open

    first = features_path[0] if isinstance(features_path, list) else features_path
    with safe_open(str(first), framework="numpy") as handle:
        keys = handle.keys()
    return any(key.startswith("train/layers/") for key in keys)


def by_default(scorers: list[Contribution], features_path: Path | list[Path]):
    """The default selection (no ``--plugins``) for one features file: the scorers that read
    each stage's features are left out where the file holds none (``needs_stages``)."""
    if has_stages(features_path):
        return scorers
    return [s for s in scorers if not s.needs_stages]


def ood_set_names(features_path: Path) -> list[str]:
    """The OOD sets of a features file, from its header (to check options before any work)."""
    from safetensors import safe_open

    with safe_open(str(features_path), framework="numpy") as handle:
        keys = list(handle.keys())
    return sorted(
        k[len("ood/") : -len("/labels")]
        for k in keys
        if k.startswith("ood/") and k.endswith("/labels")
    )
