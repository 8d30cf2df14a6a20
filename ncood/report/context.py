"""What a report section sees: the analyzed runs, the language, and where figures go.

Everything several sections need (which OOD sets and scorers the runs have, a metric's series
along training, how a scorer or a list is named, the appendix's definitions) is a method here,
so that a section plugin — built-in or not — imports the core and never another section.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from ncood.errors import NcoodError
from ncood.host.scoring import FAMILIES
from ncood.report.latex import escape, num, printable
from ncood.store.arrays_file import arrays_path, load_arrays
from ncood.store.integrity import verify_files
from ncood.store.manifest import is_imported
from ncood.store.results_schema import check_results
from ncood.store.run import RunDir, epoch_name
from ncood.store.scores_file import load_scores, scores_path, unscored

if TYPE_CHECKING:
    from ncood.host.scoring import Contribution

LANGUAGES = ("fr", "en")
OTHER_FAMILY = "other"  # a scorer with no family the report knows (a third-party one)
FAMILY_ORDER = (*FAMILIES, OTHER_FAMILY)  # how the OOD tables group their rows
STANDARD_WIDTH = 64  # the ResNet-18 base width; the demo presets shrink it
_PLACEHOLDER = re.compile(r"<(\w+)>")
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: object, max_length: int = 48) -> str:
    """A file-name-safe form of any name: ascii letters, digits and single hyphens.

    Names that lose characters get a short hash suffix, so ``a$b`` and ``a&b`` stay distinct.
    """
    raw = str(text)
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")[:max_length].strip("-")
    if slug != raw or not slug:
        slug = f"{slug}-{hashlib.sha1(raw.encode()).hexdigest()[:6]}".lstrip("-")
    return slug


def section_label(name: str) -> str:
    """The ``\\label`` every section gets, so any template can write ``\\ref{sec:ood}``."""
    return f"sec:{slugify(name)}"


@dataclass
class ReportSection:
    """A part of the document. ``build`` draws figures and returns the template's variables;
    returning ``None`` leaves the section out (nothing to say for these runs)."""

    name: str
    order: int
    template: str
    build: Callable[[ReportContext], dict[str, Any] | None]
    template_dir: Path | None = None
    plugin: str = ""


@dataclass
class Definition:
    """A term the appendix defines: a name, a formula (trusted LaTeX) and what it means."""

    term: Markup
    formula: Markup
    meaning: Markup


@dataclass
class AnalyzedRun:
    run: RunDir
    manifest: dict[str, Any]
    history: list[dict[str, Any]]
    results: dict[int, dict[str, Any]]  # epoch → results.json

    @property
    def name(self) -> str:
        return self.run.root.name

    @property
    def imported(self) -> bool:
        """Trained outside ncood and brought in by ``ncood extract``: no training history."""
        return is_imported(self.manifest)

    @property
    def preset(self) -> str:
        """The preset of a trained run; the architecture of an imported one."""
        if self.imported:
            return str(self.manifest.get("model", {}).get("name", self.name))
        return self.manifest["config"].get("preset", self.name)

    @property
    def epochs(self) -> int:
        return int(self.manifest["config"]["epochs"])

    @property
    def last_epoch(self) -> int:
        return max(self.results)

    @property
    def final(self) -> dict[str, Any]:
        return self.results[self.last_epoch]

    @cached_property
    def final_scores(self):
        return self.scores_at(self.last_epoch)

    def scores_at(self, epoch: int) -> dict[str, dict[str, Any]]:
        """Per-sample scores of each scorer at ``epoch`` (scorer → split → array). Results
        that list a scorer without its scores are refused: every statistic the report shows
        ("best", intervals, the comparisons) must stand on the scores of every scorer listed.
        """
        cache = self.__dict__.setdefault("_scores", {})
        if epoch not in cache:
            folder, results = self.run.analysis_dir(epoch), self.results[epoch]
            path = scores_path(folder, results)
            scores = load_scores(path, results)
            check_scores_fit(scores, self.manifest, path)
            missing = unscored(results, scores) if "scores_file" in results else []
            if missing:
                raise NcoodError(
                    f"{folder / 'results.json'} lists {', '.join(missing)} without their "
                    f"scores ({path.name} holds none for them); run `ncood analyze "
                    f"{self.run.root} --epoch {epoch} --plugins {','.join(missing)}` again"
                )
            cache[epoch] = scores
        return cache[epoch]

    def arrays_at(self, epoch: int, analysis: str) -> dict[str, Any]:
        """The arrays ``analysis`` saved beside results.json at ``epoch`` ({} if none)."""
        cache = self.__dict__.setdefault("_arrays", {})
        if (epoch, analysis) not in cache:
            path = arrays_path(self.run.analysis_dir(epoch), analysis)
            cache[epoch, analysis] = load_arrays(path)
        return cache[epoch, analysis]

    def ood_sets(self, scorer: str | None = None) -> list[str]:
        """OOD sets with results at the last epoch (for ``scorer`` when given), in the order
        the run's configuration lists them (the primary one first)."""
        per_set = self.final.get("ood", {})
        scored = [o for o, per in per_set.items() if scorer is None or scorer in per]
        order = [*self.manifest["config"].get("ood", []), *scored]
        return [o for o in dict.fromkeys(order) if o in scored]

    def scorers(self, epochs: list[int] | None = None) -> list[str]:
        """Scorers with a result at any of ``epochs`` (default: every analyzed one), first seen
        first."""
        seen: list[str] = []
        for epoch in sorted(self.results) if epochs is None else epochs:
            for per_scorer in self.results[epoch].get("ood", {}).values():
                seen += [s for s in per_scorer if s not in seen]
        return seen

    def series(self, key: str, group: str = "nc") -> list[tuple[int, float]]:
        """(epoch, value) of ``results[group][key]`` at every analyzed epoch where it is a
        finite number."""
        points = []
        for epoch, results in sorted(self.results.items()):
            value = results.get(group, {}).get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                points.append((epoch, float(value)))
        return points

    def auroc_series(self, ood: str, scorer: str) -> list[tuple[int, float]]:
        """(epoch, AUROC of ``scorer`` on ``ood``) at every analyzed epoch that has it."""
        return [
            (epoch, results["ood"][ood][scorer]["auroc"])
            for epoch, results in sorted(self.results.items())
            if scorer in results.get("ood", {}).get(ood, {})
        ]

    def params(self, scorer: str) -> dict[str, Any]:
        """The parameters ``scorer`` ran with at the last epoch (resolved ones included)."""
        return dict(self.final.get("params", {}).get(scorer, {}) or {})


def load_analyzed_run(path: Path, verify: bool = False) -> AnalyzedRun:
    run = RunDir.open(path)
    epochs = run.analyzed_epochs()
    if not epochs:
        raise NcoodError(f"{path} has no analysis yet (run `ncood analyze {path} --epoch all`)")
    manifest = run.manifest()
    verify_files(run, [f"features/{epoch_name(e)}.safetensors" for e in epochs], full=verify)
    results = {e: check_results(run.results_for(e), run.results(e)) for e in epochs}
    analyzed = AnalyzedRun(run, manifest, run.history(), results)
    analyzed.scores_at(analyzed.last_epoch)  # checked now: "best" is claimed from the last epoch
    return analyzed


def check_scores_fit(scores: dict, manifest: dict, path: Path) -> None:
    """Scores of as many samples as the run's test and OOD sets hold (when it records them)."""
    dataset = manifest.get("dataset") if isinstance(manifest.get("dataset"), dict) else {}
    sizes = {"test": dataset.get("test_size")}
    sizes.update({f"ood/{k}": v for k, v in (dataset.get("ood") or {}).items()})
    for scorer, per_split in scores.items():
        for split, values in per_split.items():
            expected = sizes.get(split)
            if isinstance(expected, int) and len(values) != expected:
                raise NcoodError(
                    f"{path}: {scorer!r} has {len(values)} {split} scores, "
                    f"but the run's {split} set holds {expected}; run `ncood analyze` again"
                )


@dataclass
class ReportContext:
    runs: list[AnalyzedRun]
    lang: str
    figures_dir: Path
    tex_dir: Path
    strings: dict[str, str]
    figures: list[Path] = field(default_factory=list)
    included: list[str] = field(default_factory=list)  # names of the sections in the document
    definitions: list[Definition] = field(default_factory=list)

    def t(self, key: str, **values: Any) -> Markup:
        """A translated phrase (trusted LaTeX from templates/i18n) with escaped values.

        Floats go through ``num`` so that the locale's decimal mark applies.
        """
        phrase = self._phrase(key)
        return Markup(
            _PLACEHOLDER.sub(
                lambda m: _latex_value(values[m.group(1)]) if m.group(1) in values else m.group(0),
                phrase,
            )
        )

    def has(self, key: str) -> bool:
        return key in self.strings

    def text(self, key: str, **values: Any) -> str:
        """A translated phrase as plain text for matplotlib (only for keys free of LaTeX).

        A ``$`` would start matplotlib's mathtext, so it is escaped in every value.
        """
        phrase = self._phrase(key)
        return _PLACEHOLDER.sub(
            lambda m: self.plain(values[m.group(1)]) if m.group(1) in values else m.group(0),
            phrase,
        )

    def plain(self, value: Any, digits: int = 3) -> str:
        """A value for matplotlib text: numbers with the locale's decimal mark, ``$`` escaped."""
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral | bool):
            text = f"{float(value):.{digits}f}"
            return text.replace(".", ",") if self.lang == "fr" else text
        return plain(value)

    def _phrase(self, key: str) -> str:
        try:
            return self.strings[key]
        except KeyError:
            raise NcoodError(f"no {self.lang!r} translation for {key!r}") from None

    def figure(self, name: str) -> Path:
        """Path for a new figure file named after ``name`` (slugified, made unique)."""
        stem = slugify(name) or "figure"
        path, index = self.figures_dir / f"{stem}.pdf", 1
        while path in self.figures:
            index += 1
            path = self.figures_dir / f"{stem}-{index}.pdf"
        self.figures.append(path)
        return path

    def save_figure(self, fig, name: str, tight: bool = True) -> Markup:
        """Localise the tick labels, save ``fig`` as ``name`` and return its path for LaTeX."""
        from ncood.report.figures import localise, save

        localise(fig, self.lang)
        return self.relative(save(fig, self.figure(name), tight=tight))

    def relative(self, path: Path) -> Markup:
        """A figure's path as \\includegraphics reads it (names are checked to be plain)."""
        relative = path.relative_to(self.tex_dir).as_posix()
        if not _PLAIN_PATH.match(relative):
            raise NcoodError(f"figure path {relative!r} has characters LaTeX cannot take")
        return Markup(relative)

    def section_ref(self, name: str) -> Markup:
        """``\\ref`` to another section of the document (check ``name in ctx.included``)."""
        return Markup(rf"\ref{{{section_label(name)}}}")

    def run_slug(self, run: AnalyzedRun) -> str:
        """A short file-name-safe name of a run, unique within this report."""
        return f"run{self.runs.index(run) + 1}-{slugify(run.name, 24)}"

    def _label_values(self, run: AnalyzedRun) -> tuple[str, dict[str, Any]]:
        values: dict[str, Any] = {"preset": run.preset, "epochs": run.epochs}
        key = "run_label_imported" if run.imported else "run_label"
        seeds = len(getattr(run, "members", None) or ())  # a group of seed runs says how many
        if seeds:
            key, values["seeds"] = "run_label_seeds", seeds

        def identity(r: AnalyzedRun) -> tuple:  # what the label shows
            return (r.preset, True) if r.imported else (r.preset, r.epochs)

        same = [r for r in self.runs if identity(r) == identity(run)]
        if len(same) == 1:
            return key, values
        if sum(r.name == run.name for r in same) == 1:
            return f"{key}_named", {**values, "name": run.name}
        return f"{key}_indexed", {**values, "index": self.runs.index(run) + 1}

    def label(self, run: AnalyzedRun) -> Markup:
        """How a run is named in text and column headers: its preset and length, or the
        architecture of an imported run (and its folder's name when two runs share both)."""
        key, values = self._label_values(run)
        return self.t(key, **values)

    def plain_label(self, run: AnalyzedRun) -> str:
        """The run's label for figure legends."""
        key, values = self._label_values(run)
        return self.text(key, **values)

    def dataset_title(self, name: str) -> Markup:
        """How a dataset is named in the text (``dataset_<name>`` in i18n, else its name)."""
        key = f"dataset_{name}"
        return self.t(key) if key in self.strings else escape(name)

    def dataset_short(self, name: str) -> Markup:
        """A dataset's short name for tables and repeated mentions (``dataset_<name>_short``)."""
        key = f"dataset_{name}_short"
        return self.t(key) if key in self.strings else escape(name)

    def dataset_plain(self, name: str) -> str:
        key = f"dataset_{name}_short"
        return self.text(key) if key in self.strings else plain(name)

    def define(self, term: Any, formula: Any, meaning: Any) -> None:
        """Add a definition to the appendix; ``formula`` and ``meaning`` should be Markup
        (trusted LaTeX) or are escaped."""
        self.definitions.append(Definition(escape(term), escape(formula), escape(meaning)))

    def definition(self, name: str, **values: Any) -> Definition:
        """The definition the i18n strings ``def_<name>_term|formula|meaning`` hold."""
        return Definition(
            self.t(f"def_{name}_term", **values),
            self.t(f"def_{name}_formula", **values),
            self.t(f"def_{name}_meaning", **values),
        )

    def define_terms(self, *names: str, **values: Any) -> None:
        """Add the i18n definitions of ``names`` to the appendix."""
        self.definitions += [self.definition(name, **values) for name in names]

    def enumeration(self, items: list) -> Markup:
        """``a, b et c`` in the document's language (items escaped unless Markup)."""
        items = [escape(i) for i in items]
        if len(items) <= 1:
            return Markup("").join(items)
        return Markup(", ").join(items[:-1]) + Markup(" ") + self.t("and") + Markup(" ") + items[-1]

    def id_datasets(self) -> list[str]:
        """The in-distribution dataset(s) of the runs, sorted."""
        return sorted({r.manifest["dataset"]["name"] for r in self.runs})

    def id_title(self) -> Markup:
        """The in-distribution dataset(s) as the text names them."""
        return Markup(", ").join(self.dataset_title(n) for n in self.id_datasets())

    def id_short(self) -> Markup:
        """The in-distribution dataset(s) by short name, for titles and repeated mentions."""
        return Markup(", ").join(self.dataset_short(n) for n in self.id_datasets())

    def ood_sets(self, runs: list[AnalyzedRun] | None = None) -> list[str]:
        """Every run's OOD sets (:meth:`AnalyzedRun.ood_sets`), first seen first."""
        return list(
            dict.fromkeys(
                o for run in (self.runs if runs is None else runs) for o in run.ood_sets()
            )
        )

    def scorers(self) -> list[str]:
        """Every scorer with a result at the last epoch of some run, first seen first."""
        seen = [s for run in self.runs for s in run.scorers([run.last_epoch])]
        return list(dict.fromkeys(seen))

    def scorer(self, name: str) -> Contribution | None:
        """The loaded scorer of that name, or None (results may name an uninstalled one)."""
        from ncood.host.loading import host

        registry = host().scorers()
        return registry.get(name) if name in registry else None

    def scorer_title(self, name: str) -> str:
        """How tables and legends name a scorer: its registered title, else its name."""
        contribution = self.scorer(name)
        return contribution.display if contribution else name

    def scorer_family(self, name: str) -> str:
        """The family a scorer was registered with (``FAMILIES``), or ``"other"`` for one no
        loaded plugin knows or registered without a family."""
        contribution = self.scorer(name)
        family = contribution.family if contribution else ""
        return family if family in FAMILIES else OTHER_FAMILY

    def fpr95_threshold(self, id_scores, ood_scores) -> float:
        """The score threshold of docs/conventions.md's FPR@95 (keeps 95 % of ID)."""
        from ncood.ood.conventions import threshold_at_recall

        return threshold_at_recall(id_scores, ood_scores)


def _latex_value(value: Any) -> Markup:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral | bool):
        return num(value)
    return escape(value)


def plain(value: Any) -> str:
    """A string for matplotlib text: literal, with ``$`` escaped so mathtext never starts."""
    return printable(str(value)).replace("$", r"\$")


def load_strings(lang: str, template_dirs: list[Path]) -> dict[str, str]:
    """Translations of every template folder; the core's come first and cannot be overridden."""
    if lang not in LANGUAGES:
        raise NcoodError(f"unknown language {lang!r} (known: {', '.join(LANGUAGES)})")
    strings: dict[str, str] = {}
    for folder in template_dirs:
        path = folder / "i18n" / f"{lang}.json"
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise NcoodError(f"{path} is not valid JSON ({exc})") from None
            strings = {**loaded, **strings}
    return strings
