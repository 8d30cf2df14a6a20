"""What ``ncood analyze`` is asked, declared once (ncood/store/settings.py): the command's
options (ncood/cli/analyze.py) are derived from these fields.

:class:`OodOptions` is what the driver (ncood/analyze/driver.py) needs: which OOD sets are
test sets, the bootstrap and the tuning; :class:`AnalyzeOptions` adds what to analyze
(:class:`Selection`), what to print and how the model-based scorers run the network. The
module stays light (no NumPy): ``ncood --help`` builds the options from it, so the parsers
and checks load their modules when they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ncood.errors import NcoodError
from ncood.ood.defaults import DEFAULT_FRACTION, DEFAULT_RESAMPLES, DEFAULT_SEED
from ncood.store.settings import setting

if TYPE_CHECKING:
    from ncood.ood.groups import TestSets


def _test_sets(values: list[str]) -> TestSets:
    from ncood.ood.groups import parse_ood

    return parse_ood(values)


def _grids(values: list[str]) -> dict[str, dict[str, list[str]]]:
    from ncood.ood.tuning import parse_tune

    return parse_tune(values)


def _parameters(values: list[str]) -> dict[str, dict[str, str]]:
    from ncood.host.scoring import parse_settings

    return parse_settings(values)


@dataclass(frozen=True)
class OodOptions:
    """Which OOD sets are test sets (and their groups), the bootstrap, and the tuning."""

    test_sets: TestSets | None = setting(  # None: every OOD set of the features
        None,
        help="Test OOD sets and their groups: near:cifar10,tin far:svhn,mnist,dtd "
        "(default: a --benchmark run's near and far groups, else every OOD set of the "
        "features).",
        metavar="[GROUP:]SETS",
        name="--ood",
        given=list[str],
        parse=_test_sets,
    )
    bootstrap: int = setting(
        DEFAULT_RESAMPLES,
        help="Stratified bootstrap resamples for the 95 % intervals (0: none).",
        metavar="N",
    )
    bootstrap_seed: int = setting(0, help="Seed of the bootstrap resamples.", metavar="N")
    tune: dict[str, dict[str, list[str]]] = setting(
        {},
        help="Grid to choose from, NAME.PARAM=V1,V2,... (repeatable; --tune-on).",
        metavar="NAME.PARAM=V1,V2,...",
        given=list[str],
        parse=_grids,
    )
    tune_on: str | None = setting(
        None,
        help="OOD validation set for --tune; must not be a test OOD set (default: a "
        "--benchmark run's validation set).",
        metavar="SET",
    )
    tune_fraction: float = setting(
        DEFAULT_FRACTION,
        help="Share of each class of ID train held out for --tune.",
        metavar="FRACTION",
    )
    tune_seed: int = setting(
        DEFAULT_SEED,
        help="Seed of the held-out ID split.",
        metavar="N",
    )
    memory_budget: float | None = setting(
        None,
        help="GiB one scorer may hold: a scorer whose own estimate for the features' shape "
        "exceeds it is refused in one line before any work, the others run (default: the "
        "memory available at the start).",
        metavar="GIB",
    )

    def with_benchmark(self, manifest: Mapping[str, Any]) -> OodOptions:
        """A benchmark run's defaults (``dataset.benchmark`` of its manifest, written by
        ``--benchmark``): without ``--ood``, its near and far groups are the test sets (its
        validation set is not one); ``--tune`` without ``--tune-on`` tunes on its validation
        set, as OpenOOD does."""
        from ncood.ood.groups import TestSets

        record = (manifest.get("dataset") or {}).get("benchmark")
        if not isinstance(record, Mapping):
            return self
        changes: dict[str, Any] = {}
        groups = {name: list(sets) for name, sets in (record.get("groups") or {}).items()}
        if self.test_sets is None and groups:
            changes["test_sets"] = TestSets([s for sets in groups.values() for s in sets], groups)
        if self.tune and self.tune_on is None and record.get("validation"):
            changes["tune_on"] = record["validation"]
        return replace(self, **changes) if changes else self

    def check(self, available: list[str]) -> list[str]:
        """The test sets among ``available`` (the features' OOD sets); one-line errors."""
        from ncood.ood.groups import check_available
        from ncood.ood.tuning import check_validation_set

        if bool(self.tune) != (self.tune_on is not None):
            raise NcoodError("--tune and --tune-on go together: a grid and its validation set")
        if self.bootstrap < 0:
            raise NcoodError(f"--bootstrap must be 0 or more, got {self.bootstrap}")
        if self.memory_budget is not None and not self.memory_budget > 0:
            raise NcoodError(f"--memory-budget must be positive, got {self.memory_budget:g}")
        if self.test_sets is not None:
            check_available(self.test_sets, available)
            test = list(self.test_sets.sets)
        else:
            test = list(available)
        if self.tune_on is not None:
            check_validation_set(self.tune_on, available, test)
        return test


@dataclass(frozen=True)
class Selection:
    """What to analyze: which scorers and analyses, with which parameters, of which epochs,
    and where the results of a features file go."""

    plugins: list[str] | None = setting(
        None,
        help="Comma-separated scorers and analyses (default: every feature-level scorer "
        "and analysis; 'all' adds the model-based scorers, which run the network).",
        metavar="NAMES",
    )
    epoch: str = setting("last", help="Checkpoint epoch: N, 'last' or 'all'.", metavar="N|last|all")
    settings: dict[str, dict[str, str]] = setting(
        {},
        help="Parameter override NAME.PARAM=VALUE (repeatable).",
        metavar="NAME.PARAM=VALUE",
        name="--set",
        given=list[str],
        parse=_parameters,
    )
    out: Path | None = setting(
        None, help="Where results.json goes for a features file.", metavar="DIR"
    )


@dataclass(frozen=True)
class AnalyzeOptions(OodOptions, Selection):
    """Every option of ``ncood analyze`` (its SOURCE aside), in the order ``--help`` lists
    them: a dataclass's fields start with those of its last base (Selection)."""

    as_json: bool = setting(
        False, help="Print the results as JSON.", name="--json", negatable=False
    )
    verify: bool = setting(
        False,
        help="Check the sha256 of each features file (and, for model-based scorers, "
        "of each checkpoint) against the run's manifest.",
        negatable=False,
    )
    discard_failed: bool = setting(
        False,
        help="A plugin that fails loses its previous result (default: it is kept).",
        negatable=False,
    )
    quiet: bool = setting(False, help="No progress bars.", negatable=False)
    # how the model-based scorers run the network
    device: str | None = setting(
        None,
        help="Run the scorers that can use an accelerator there (e.g. cuda): sets the "
        "'device' parameter of each selected scorer that has one, unless --set does, and "
        "is where model-based scorers run the network (default: a GPU if there is one).",
        metavar="DEVICE",
    )
    precision: str = setting(
        "fp32",
        help="Model-based scorers' forward passes: exact fp32 (no TF32), or bf16 autocast.",
        metavar="fp32|bf16",
    )
    data_dir: Path | None = setting(
        None,
        help="Where the run's datasets are, for model-based scorers (default: the run's).",
        metavar="DIR",
    )
    batch_size: int | None = setting(
        None, help="Images per forward of the model-based scorers.", metavar="N"
    )
    model: str | None = setting(
        None,
        help="An imported run's architecture, named again: a package.module:callable "
        "that the run records is imported only then (it must equal the manifest's).",
        metavar="ARCH",
    )
