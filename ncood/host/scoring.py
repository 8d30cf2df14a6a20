"""What a scorer or an analysis is, and how ``--set name.param=value`` reaches it.

A scorer (:class:`Scorer`, pytorch-ood's fit/predict split) fits once on in-distribution train,
then scores any split: an (N,) array, higher = more in-distribution. It reads the features file
or, if it says ``needs_network``, the network itself. An analysis reads a whole
:class:`FeatureDump` and returns a JSON-able dict. Both are built by a factory whose keyword
arguments are their parameters.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol

from ncood.errors import NcoodError

if TYPE_CHECKING:  # this module is imported to load plugins: it must not pull in numpy
    import numpy as np

    from ncood.store.features import FeatureDump


# The report groups scorers by what they read (docs/scorers.md): the logits only; the features
# and the head; the features after shaping the activations; the network itself.
FAMILIES = ("logit", "feature", "shaping", "model")

# Above this temperature softmax(z / T) and T·logsumexp(z / T) of logits of a usual size
# (1 to 100) differ from sample to sample by less than ~1e-12 relative: a few thousand float64
# ulps, rounding rather than a ranking; far above it every score is the same number
# (docs/conventions.md, "Scores that say nothing").
MAX_TEMPERATURE = 1e12


def check_temperature(where: str, value: float) -> None:
    """A scorer's temperature: positive and at most MAX_TEMPERATURE (a ValueError, which
    ``Contribution.build`` turns into a one-line error before any work)."""
    if not value > 0:
        raise ValueError(f"{where} must be positive, got {value}")
    if value > MAX_TEMPERATURE:
        raise ValueError(
            f"{where} = {value:g} exceeds {MAX_TEMPERATURE:g}: the logits / T would differ by "
            f"less than float64 resolves, giving every sample the same score"
        )


@dataclass(frozen=True)
class Unit:
    """What a number parameter measures, declared in its annotation (``Percent``, ``Fraction``)
    so that :class:`Contribution` checks its range, and the other libraries' units, in one
    place: OpenOOD and pytorch-ood give some percentiles as fractions (0.9) and some fractions
    as percentages."""

    name: str  # "percentage" or "fraction"
    top: float  # the largest value: 100 or 1


# ncood's percentile-like parameters are percentages in [0, 100] (react.percentile = 90);
# its shares of a set are fractions in [0, 1] (knn.bank_fraction = 0.01).
Percent = Annotated[float, Unit("percentage", 100.0)]
Fraction = Annotated[float, Unit("fraction", 1.0)]


def unit_error(where: str, value: float, unit: Unit) -> str | None:
    """Why ``value`` cannot be a parameter of this unit (None if it can): out of [0, top], or
    a percentage below 1 that reads as another library's fraction."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if unit.top == 100.0 and 0 < value < 1:
        return (
            f"{where} = {value:g} would mean {value:g} % (ncood takes percentages, 0 to 100): "
            f"a fraction in another library's units? set {where}={100 * value:g}"
        )
    if unit.top == 1.0 and 1 < value <= 100:
        return (
            f"{where} = {value:g} is out of [0, 1] (ncood takes a fraction here): a percentage "
            f"in another library's units? set {where}={value / 100:g}"
        )
    if not (math.isfinite(value) and 0 <= value <= unit.top):
        return f"{where} must be a {unit.name} in [0, {unit.top:g}], got {value:g}"
    return None


class Scorer:
    """The one scorer contract (pytorch-ood's ``Detector``): ``fit`` once on ID train, then
    ``score`` any split → N finite float64 values, higher = more in-distribution. A sample's
    score depends on the fitted state and that sample only, so a split scored in chunks scores
    the same (``ncood.testing.check_scorer`` checks every rule).

    ``needs_network`` says what the two methods receive:

    * False (feature scorers): ``fit(train: Split, head: Head)``, ``score(split: Split)`` on the
      dumped features, logits and labels (:mod:`ncood.store.features`); analysis never runs
      the network.
    * True (network scorers: input gradients, dropout, inner activations):
      ``fit(network: Network, train: Batches)``, ``score(network, split: Batches)``
      (:mod:`ncood.host.network`); only on a run directory, and only when named or with
      ``--plugins all``.

    Subclassing is optional: any object with ``fit`` and ``score`` is a scorer, and a factory
    that is not a class says ``needs_network`` as an attribute of its own.

    ``memory_bytes(shape: DumpShape) -> int`` (optional) says how many bytes the scorer will
    hold at its peak for a features file of that shape (its fitted state and its largest
    working block; not the chunks every scorer reads). The host asks before ``fit`` and refuses
    a scorer whose estimate exceeds the memory budget (``--memory-budget``) in one line, so it
    is never killed by the operating system halfway; a scorer without it is not checked.
    """

    needs_network: ClassVar[bool] = False

    def fit(self, *inputs: Any) -> None:
        """Nothing to fit, unless a subclass says otherwise."""

    def score(self, *inputs: Any) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not define score()")


def needs_network(scorer_or_factory: Any) -> bool:
    """Whether a scorer (or the factory that builds it) runs the network: its own
    ``needs_network`` attribute, False where it has none."""
    return getattr(scorer_or_factory, "needs_network", False) is True


def needs_members(scorer_or_factory: Any) -> bool:
    """Whether a scorer (or its factory) scores an ensemble: its ``needs_members`` attribute.
    Such a scorer reads ``split.members``, the same images seen by each run of a seeds folder
    (``ncood train --seeds``), and runs only when ``ncood analyze`` is given that folder."""
    return getattr(scorer_or_factory, "needs_members", False) is True


def needs_stages(scorer_or_factory: Any) -> bool:
    """Whether a scorer reads each stage's features (``split.stage``): its ``needs_stages``
    attribute. Without a name it runs only on a features file that holds them (``ncood train
    --stage-features``): elsewhere it would only repeat its penultimate-layer scorer."""
    return getattr(scorer_or_factory, "needs_stages", False) is True


@dataclass(frozen=True)
class DumpShape:
    """The sizes of a features file that a scorer's memory estimate may depend on."""

    train: int  # ID train samples
    dim: int  # feature width D
    classes: int  # C
    scored: int  # samples of the largest split scored (test or an OOD set)

    def describe(self) -> str:
        return f"{self.train:,} train × {self.dim} features, {self.classes:,} classes"


def memory_estimate(scorer: Any, shape: DumpShape) -> int | None:
    """The scorer's own estimate of its peak bytes for ``shape`` (``Scorer`` docstring), or
    None where it gives none."""
    estimate = getattr(scorer, "memory_bytes", None)
    if not callable(estimate):
        return None
    value = estimate(shape)
    if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
        raise NcoodError(f"memory_bytes() returned {value!r}, not a number of bytes ≥ 0")
    return int(value)


class Analysis(Protocol):
    def run(self, dump: FeatureDump) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Contribution:
    """A scorer or analysis as registered by a plugin."""

    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str
    kind: str  # "scorer" or "analysis"
    title: str = ""  # how tables and legends name it; defaults to ``name``
    family: str = ""  # one of FAMILIES, for the report's grouping; "" for analyses and unknowns

    @property
    def display(self) -> str:
        return self.title or self.name

    @property
    def needs_network(self) -> bool:
        """A scorer that runs the network, as its factory says (selection needs no instance)."""
        return self.kind == "scorer" and needs_network(self.factory)

    @property
    def needs_members(self) -> bool:
        """A scorer of an ensemble's runs (the splits' ``members``), as its factory says."""
        return self.kind == "scorer" and needs_members(self.factory)

    @property
    def needs_stages(self) -> bool:
        """A scorer of each stage's features, as its factory says."""
        return self.kind == "scorer" and needs_stages(self.factory)

    def defaults(self) -> dict[str, Any]:
        """Parameters and their defaults, read from the factory's signature."""
        params = inspect.signature(self.factory).parameters.values()
        return {
            p.name: p.default
            for p in params
            if p.default is not inspect.Parameter.empty
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }

    def create(self, **params: Any) -> Any:
        """Instantiate with typed parameters (the defaults fill the rest); an unknown name or a
        value of the wrong type is a :class:`NcoodError` naming the known parameters."""
        return self._instantiate(self._checked(params))[0]

    def build(self, overrides: Mapping[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
        """Instantiate from ``--set`` strings, each coerced to its default's type first; returns
        the object and every parameter's value."""
        self._checked(dict(overrides or {}), typed=False)
        hints, defaults = self.hints(), self.defaults()
        typed = {
            key: coerce(raw, defaults[key], f"{self.name}.{key}", hints.get(key))
            for key, raw in (overrides or {}).items()
        }
        return self._instantiate(self._checked(typed))

    def _checked(self, params: dict[str, Any], typed: bool = True) -> dict[str, Any]:
        defaults = self.defaults()
        for key, value in params.items():
            if key not in defaults:
                known = ", ".join(sorted(defaults)) or "none"
                raise NcoodError(
                    f"{self.kind} {self.name!r} has no parameter {key!r} (known: {known})"
                )
            if typed and not accepts(value, defaults[key], self.hints().get(key)):
                raise NcoodError(
                    f"{self.kind} {self.name!r}: parameter {key!r} expects "
                    f"{type_name(defaults[key], self.hints().get(key))}, got {value!r}"
                )
            unit = self.units().get(key)
            why = unit_error(f"{self.name}.{key}", value, unit) if typed and unit else None
            if why:
                raise NcoodError(f"{self.kind} {self.name!r}: {why}")
        return params

    def _instantiate(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        params = {**self.defaults(), **params}
        try:
            built = self.factory(**params)
        except (TypeError, ValueError) as exc:  # a value the factory refuses is a user error
            raise NcoodError(f"{self.kind} {self.name!r}: {exc}") from None
        return built, params

    def units(self) -> dict[str, Unit]:
        """The parameters declared ``Percent`` or ``Fraction`` (a :class:`Unit` in their
        ``Annotated`` type, alone or in a union with None)."""
        target = self.factory.__init__ if inspect.isclass(self.factory) else self.factory
        try:
            hints = typing.get_type_hints(target, include_extras=True)
        except Exception:
            return {}
        found = {}
        for key, hint in hints.items():
            for part in (hint, *typing.get_args(hint)):
                extras = getattr(part, "__metadata__", ())
                unit = next((extra for extra in extras if isinstance(extra, Unit)), None)
                if unit is not None:
                    found[key] = unit
                    break
        return found

    def hints(self) -> dict[str, Any]:
        """The factory's resolved type annotations (they type a parameter whose default is None)."""
        target = self.factory.__init__ if inspect.isclass(self.factory) else self.factory
        try:
            return typing.get_type_hints(target)
        except Exception:  # unresolvable annotations only cost the typing of None defaults
            return {}


def accepts(value: Any, default: Any, hint: Any = None) -> bool:
    """Whether a typed value suits a parameter: the type of its default (an int is a float),
    or for a None default its annotation when it names bool, int, float or str."""
    if default is None:
        if value is None or hint is None:
            return True
        kinds = [k for k in (bool, int, float, str) if k is hint or k in typing.get_args(hint)]
        return not kinds or any(_is(value, kind) for kind in kinds)
    return _is(value, type(default))


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def type_name(default: Any, hint: Any = None) -> str:
    if default is None:
        return str(hint).replace("typing.", "") if hint is not None else "any value"
    return type(default).__name__


def coerce(raw: str, default: Any, where: str, hint: Any = None) -> Any:
    """Turn a command-line string into the type of the parameter's default.

    A parameter whose default is None ("automatic") takes its type from its annotation
    (``dim: int | None = None`` accepts ``--set x.dim=256`` and ``--set x.dim=auto``).
    """
    if not isinstance(raw, str):
        return raw
    if default is None and hint is not None:
        if raw.lower() in ("none", "auto"):
            return None
        for kind in (bool, int, float, str):
            if kind in typing.get_args(hint) or hint is kind:
                return coerce(raw, kind(), where)
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return finite(float(raw), raw, where)
        if default is None:
            for kind in (int, float):
                try:
                    return finite(kind(raw), raw, where)
                except ValueError:
                    pass
            return None if raw.lower() in ("none", "auto") else raw
    except ValueError:
        raise NcoodError(
            f"--set {where}={raw}: expected a value of type {type(default).__name__}"
        ) from None
    return raw


def finite(value, raw: str, where: str):
    """NaN and ±Inf pass ``float()`` but mean nothing as a parameter (and break the JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise NcoodError(f"--set {where}={raw}: expected a finite number")
    return value


def parse_settings(settings: list[str]) -> dict[str, dict[str, str]]:
    """``["vim.dim=256", "energy.T=2"]`` → ``{"vim": {"dim": "256"}, "energy": {"T": "2"}}``."""
    parsed: dict[str, dict[str, str]] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        name, dot, param = key.strip().partition(".")
        if not sep or not dot or not name or not param:
            raise NcoodError(f"--set expects NAME.PARAM=VALUE, got {item!r}")
        parsed.setdefault(name, {})[param] = value.strip()
    return parsed


# A scorer's seed: torch's generators take 64 bits at most (2**70 would fail deep inside with
# "Overflow when unpacking long long"), and JSON readers keep int64 exactly.
MAX_SEED = 2**63 - 1


def check_seed(where: str, value: int) -> None:
    """A scorer's ``seed`` in [0, MAX_SEED] (a ValueError, which ``Contribution.build`` turns
    into a one-line error before any work)."""
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{where} must be in [0, 2**63 - 1], got {value}")
