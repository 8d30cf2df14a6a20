"""``ncood report``: collect the sections plugins contribute, render them, compile the PDF.

Every section is built first (figures drawn, variables computed), so that a section such as
the introduction knows which others made it into the document; then each is rendered with
its own template folder ahead of the core's, marked in the .tex (``% ncood-section:``) so a
LaTeX error can be traced back to the section and plugin that wrote the line.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import jinja2
import matplotlib
from markupsafe import Markup

import ncood
from ncood.atomic import atomic_path, write_text
from ncood.errors import NcoodError
from ncood.plugins import host
from ncood.report.compile import INSTALL_HINT, LatexError, compile_pdf, latexmk_available
from ncood.report.context import (
    ReportContext,
    ReportSection,
    load_analysed_run,
    load_strings,
    section_label,
    slugify,
)
from ncood.report.latex import environment
from ncood.report.seeds import expand_paths, group_by_seed

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
    runs = group_by_seed([load_analysed_run(Path(p)) for p in run_paths])
    name = name or f"ncood-report-{lang}"
    if slugify(name) != name:
        raise NcoodError(f"--name {name!r}: use letters, digits and hyphens only")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures_dir = out_dir / f"{name}-figures"
    if figures_dir.exists():
        shutil.rmtree(figures_dir)
    figures_dir.mkdir(parents=True)

    sections: list[ReportSection] = [s for _, s in host().report_sections().items()]
    sections.sort(key=lambda s: (s.order, s.name))
    template_dirs = [core_templates()] + [
        Path(s.template_dir) for s in sections if s.template_dir is not None
    ]
    ctx = ReportContext(
        runs=runs,
        lang=lang,
        figures_dir=figures_dir,
        tex_dir=out_dir,
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
    for path in included_graphics(document):
        if not (out_dir / path).is_file():
            raise NcoodError(f"the report includes {path}, which no section wrote")
    tex = out_dir / f"{name}.tex"
    write_text(tex, document)

    if not pdf:
        return ReportResult(tex, None, ctx.figures)
    if not latexmk_available():
        return ReportResult(tex, None, ctx.figures, INSTALL_HINT)
    try:
        built_pdf = compile_pdf(tex, out_dir / f".{name}-build")
    except LatexError as exc:
        notes = _where(exc, document)
        raise LatexError(exc.tex, exc.problems, exc.log, notes) from None
    final = out_dir / f"{name}.pdf"
    with atomic_path(final) as tmp:
        shutil.copyfile(built_pdf, tmp)
    return ReportResult(tex, final, ctx.figures)


def _build_section(section: ReportSection, ctx: ReportContext):
    where = f"report section {section.name!r} (plugin {section.plugin or '?'})"
    try:
        return section.build(ctx)
    except NcoodError as exc:
        raise NcoodError(f"{where}: {exc}") from exc
    except Exception as exc:  # a plugin's bug: name it in one line instead of a traceback
        raise NcoodError(f"{where} failed: {type(exc).__name__}: {exc}") from exc


_ENVIRONMENTS: dict[tuple[str, ...], jinja2.Environment] = {}


def _environment(section: ReportSection) -> jinja2.Environment:
    """A section's own template folder first, then the core's (shared macros, i18n)."""
    folders = [Path(section.template_dir)] if section.template_dir else []
    key = tuple(str(f) for f in [*folders, core_templates()])
    if key not in _ENVIRONMENTS:
        _ENVIRONMENTS[key] = environment([*folders, core_templates()])
    return _ENVIRONMENTS[key]


def _render_section(section: ReportSection, data: dict, ctx: ReportContext) -> str:
    try:
        template = _environment(section).get_template(section.template)
        text = template.render(ctx=ctx, t=ctx.t, data=data)
    except Exception as exc:  # a template's bug: name the section, template and line
        where = getattr(exc, "lineno", None) or _template_line(exc, section.template)
        raise NcoodError(
            f"report section {section.name!r} (plugin {section.plugin or '?'}): template "
            f"{section.template}{f':{where}' if where else ''}: {exc}"
        ) from exc
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
