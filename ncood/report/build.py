"""``ncood report``: collect the sections plugins contribute, render them, compile the PDF.

Every section is built first (figures drawn, variables computed), so that a section such as
the introduction knows which others made it into the document; then each is rendered with
its own template folder ahead of the core's, marked in the .tex (``% ncood-section:``) so a
LaTeX error can be traced back to the section and plugin that wrote the line.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import jinja2
import matplotlib
from markupsafe import Markup

import ncood
from ncood.errors import NcoodError
from ncood.host.guard import call_plugin
from ncood.host.loading import host
from ncood.report.compile import INSTALL_HINT, LatexError, compile_pdf, latexmk_available
from ncood.report.context import (
    ReportContext,
    ReportSection,
    load_analyzed_run,
    load_strings,
    section_label,
    slugify,
)
from ncood.report.latex import environment
from ncood.report.seeds import expand_paths, group_by_seed
from ncood.store.atomic import clean_stale, default_mode, staging_dir
from ncood.store.outputs import WRITE_ERRORS, one_line_os_errors, prepare_out_dir

MAIN_TEMPLATE = "report.tex.j2"
SECTION_MARK = "% ncood-section: "
_INCLUDE = re.compile(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]*)\}")
_SECTION_LINE = re.compile(r"^\\section\*?\{.*$", re.MULTILINE)


@dataclass
class ReportResult:
    tex: Path
    pdf: Path | None
    figures: list[Path]
    message: str = ""


def core_templates() -> Path:
    return Path(str(files("ncood_templates")))


def included_graphics(tex: str) -> list[str]:
    """Every path an ``\\includegraphics`` of the document names."""
    return _INCLUDE.findall(tex)


def build_report(
    run_paths: list[Path],
    *,
    lang: str = "fr",
    out_dir: Path = Path("reports"),
    name: str | None = None,
    pdf: bool = True,
    verify: bool = False,
) -> ReportResult:
    """Render every section for ``run_paths`` into ``out_dir/name.tex`` (and ``.pdf``)."""
    matplotlib.use("Agg")
    if not run_paths:
        raise NcoodError("give at least one run directory")
    run_paths = expand_paths(run_paths)  # a folder of seed-* runs stands for its runs
    resolved = [Path(p).resolve() for p in run_paths]
    for path in resolved:
        if resolved.count(path) > 1:
            raise NcoodError(f"run {path} is given twice")
    runs = group_by_seed([load_analyzed_run(Path(p), verify=verify) for p in run_paths])
    name = name or f"ncood-report-{lang}"
    if slugify(name) != name:
        raise NcoodError(f"--name {name!r}: use letters, digits and hyphens only")
    out_dir = prepare_out_dir(Path(out_dir))
    clean_stale(out_dir)  # what a killed report left: temp files, staging folders
    with one_line_os_errors(f"nothing written, the previous report in {out_dir} is kept"):
        stage = staging_dir(out_dir, name)
        try:
            return _build_in(stage, runs, lang, out_dir, name, pdf)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def _build_in(
    stage: Path, runs: list, lang: str, out_dir: Path, name: str, pdf: bool
) -> ReportResult:
    """Build every file of the report in ``stage`` (a fresh folder in ``out_dir``), then move
    them into place: a failure at any step leaves the previous report as it was."""
    figures_dir = stage / f"{name}-figures"
    figures_dir.mkdir()
    sections: list[ReportSection] = [s for _, s in host().report_sections().items()]
    sections.sort(key=lambda s: (s.order, s.name))
    template_dirs = [core_templates()] + [
        Path(s.template_dir) for s in sections if s.template_dir is not None
    ]
    ctx = ReportContext(
        runs=runs,
        lang=lang,
        figures_dir=figures_dir,
        tex_dir=stage,
        strings=load_strings(lang, template_dirs),
    )
    built = []
    for section in sections:
        data = _build_section(section, ctx)
        if data is not None:
            built.append((section, data))
    ctx.included = [section.name for section, _ in built]

    rendered = [_render_section(section, data, ctx) for section, data in built]
    document = (
        environment([core_templates()])
        .get_template(MAIN_TEMPLATE)
        .render(ctx=ctx, t=ctx.t, version=ncood.__version__, body=Markup("".join(rendered)))
    )
    graphics = included_graphics(document)
    for path in graphics:
        if not (stage / path).is_file():
            raise NcoodError(f"the report includes {path}, which no section wrote")
    tex = stage / f"{name}.tex"
    tex.write_text(document, encoding="utf-8")
    os.chmod(tex, default_mode())
    figures = [out_dir / p.relative_to(stage) for p in ctx.figures]
    message, built_pdf = "", None
    if pdf and not latexmk_available():
        message = INSTALL_HINT
    elif pdf:
        built_pdf = stage / f"{name}.pdf"
        try:
            compile_pdf(tex, built_pdf, out_dir / f".{name}-build" / f"{name}.log", inputs=graphics)
        except LatexError as exc:  # the source is still published (the error names its
            notes = _where(exc, document)  # lines); the previous PDF stays
            _publish(stage, out_dir, figures_dir.name, [tex])
            raise LatexError(out_dir / tex.name, exc.problems, exc.log, notes) from None
    _publish(stage, out_dir, figures_dir.name, [tex] + ([built_pdf] if built_pdf else []))
    final_pdf = out_dir / built_pdf.name if built_pdf else None
    return ReportResult(out_dir / tex.name, final_pdf, figures, message)


def _publish(stage: Path, out_dir: Path, figures_name: str, files: list[Path]) -> None:
    """Figures first (the old folder swapped out in one rename), then the .tex, then the PDF."""
    final_figures = out_dir / figures_name
    if final_figures.is_symlink() or final_figures.is_file():
        final_figures.unlink()
    elif final_figures.exists():
        os.replace(final_figures, stage / "previous-figures")
    os.replace(stage / figures_name, final_figures)
    for path in files:
        os.replace(path, out_dir / path.name)


def _build_section(section: ReportSection, ctx: ReportContext):
    where = f"report section {section.name!r} (plugin {section.plugin or '?'})"
    # a full disk is not the plugin's fault: the one line of build_report says what was kept
    called = call_plugin(section.build, ctx, passes=_write_error)
    if isinstance(called.error, NcoodError):
        raise NcoodError(f"{where}: {called.error}") from called.error
    if called.failed:  # a plugin's bug (sys.exit too): one line, not an exit 0
        raise NcoodError(f"{where} failed: {called.reason}") from called.error
    return called.value


def _write_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRORS


_ENVIRONMENTS: dict[tuple[str, ...], jinja2.Environment] = {}


def _environment(section: ReportSection) -> jinja2.Environment:
    """A section's own template folder first, then the core's (shared macros, i18n)."""
    folders = [Path(section.template_dir)] if section.template_dir else []
    key = tuple(str(f) for f in [*folders, core_templates()])
    if key not in _ENVIRONMENTS:
        _ENVIRONMENTS[key] = environment([*folders, core_templates()])
    return _ENVIRONMENTS[key]


def _render_section(section: ReportSection, data: dict, ctx: ReportContext) -> str:
    called = call_plugin(
        lambda: (
            _environment(section).get_template(section.template).render(ctx=ctx, t=ctx.t, data=data)
        )
    )
    if called.failed:  # a template's bug: name the section, template and line
        exc = called.error
        where = getattr(exc, "lineno", None) or _template_line(exc, section.template)
        raise NcoodError(
            f"report section {section.name!r} (plugin {section.plugin or '?'}): template "
            f"{section.template}{f':{where}' if where else ''}: {exc}"
        ) from exc
    text = called.value
    label = section_label(section.name)
    if f"\\label{{{label}}}" not in text:
        text = _SECTION_LINE.sub(lambda m: f"{m.group(0)}\\label{{{label}}}", text, count=1)
    mark = f"{SECTION_MARK}{_comment_safe(section.name)} (plugin {_comment_safe(section.plugin)})"
    return f"{mark}\n\\ncoodfloatbarrier\n{text}\n"


def _template_line(exc: BaseException, template: str) -> int | None:
    """The line of ``template`` where a rendering error arose (Jinja maps its tracebacks)."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(template):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _comment_safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "?", name) or "?"


def _where(error: LatexError, document: str) -> list[str]:
    """Which section (and plugin) wrote each line LaTeX complained about."""
    starts = [
        (number, line[len(SECTION_MARK) :])
        for number, line in enumerate(document.splitlines(), start=1)
        if line.startswith(SECTION_MARK)
    ]
    notes = []
    for problem in error.problems:
        if problem.line is None or not problem.file.endswith(error.tex.name):
            continue
        owners = [owner for start, owner in starts if start <= problem.line]
        if owners:
            notes.append(f"line {problem.line} belongs to section {owners[-1]}")
    return notes
