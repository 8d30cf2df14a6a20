"""What a report section sees: the analysed runs, the language, and where figures go."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from markupsafe import Markup

from ncood.analysis import load_scores
from ncood.errors import NcoodError
from ncood.report.latex import escape
from ncood.run import RunDir

LANGUAGES = ("fr", "en")
_PLACEHOLDER = re.compile(r"<(\w+)>")
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")


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
class AnalysedRun:
    run: RunDir
    manifest: dict[str, Any]
    history: list[dict[str, Any]]
    results: dict[int, dict[str, Any]]  # epoch → results.json

    @property
    def name(self) -> str:
        return self.run.root.name

    @property
    def preset(self) -> str:
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
        return load_scores(self.run.analysis_dir(self.last_epoch) / "scores.safetensors")


def load_analysed_run(path: Path) -> AnalysedRun:
    run = RunDir.open(path)
    epochs = run.analysed_epochs()
    if not epochs:
        raise NcoodError(f"{path} has no analysis yet (run `ncood analyze {path} --epoch all`)")
    return AnalysedRun(run, run.manifest(), run.history(), {e: run.results_for(e) for e in epochs})


@dataclass
class ReportContext:
    runs: list[AnalysedRun]
    lang: str
    figures_dir: Path
    tex_dir: Path
    strings: dict[str, str]
    figures: list[Path] = field(default_factory=list)

    def t(self, key: str, **values: Any) -> Markup:
        """A translated phrase (trusted LaTeX from templates/i18n) with escaped values."""
        try:
            phrase = self.strings[key]
        except KeyError:
            raise NcoodError(f"no {self.lang!r} translation for {key!r}") from None
        return Markup(
            _PLACEHOLDER.sub(
                lambda m: escape(values[m.group(1)]) if m.group(1) in values else m.group(0), phrase
            )
        )

    def figure(self, name: str) -> Path:
        """Path for a new figure file; the template includes it by its relative path."""
        path = self.figures_dir / f"{name}.pdf"
        self.figures.append(path)
        return path

    def relative(self, path: Path) -> Markup:
        """A figure's path as \\includegraphics reads it (names are checked to be plain)."""
        relative = path.relative_to(self.tex_dir).as_posix()
        if not _PLAIN_PATH.match(relative):
            raise NcoodError(f"figure path {relative!r} has characters LaTeX cannot take")
        return Markup(relative)

    def label(self, run: AnalysedRun) -> Markup:
        """How a run is named in column headers: its preset and length."""
        return self.t("run_label", preset=run.preset, epochs=run.epochs)


def load_strings(lang: str, template_dirs: list[Path]) -> dict[str, str]:
    if lang not in LANGUAGES:
        raise NcoodError(f"unknown language {lang!r} (known: {', '.join(LANGUAGES)})")
    strings: dict[str, str] = {}
    for folder in template_dirs:
        path = folder / "i18n" / f"{lang}.json"
        if path.is_file():
            strings = {**json.loads(path.read_text(encoding="utf-8")), **strings}
    return strings
