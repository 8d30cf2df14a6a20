"""``ncood report``: collect the sections plugins contribute, render them, compile the PDF."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import matplotlib
from markupsafe import Markup

from ncood.atomic import atomic_path, write_text
from ncood.errors import NcoodError
from ncood.plugins import host
from ncood.report.compile import INSTALL_HINT, compile_pdf, latexmk_available
from ncood.report.context import ReportContext, ReportSection, load_analysed_run, load_strings
from ncood.report.latex import environment

MAIN_TEMPLATE = "report.tex.j2"


@dataclass
class ReportResult:
    tex: Path
    pdf: Path | None
    figures: list[Path]
    message: str = ""


def core_templates() -> Path:
    return Path(str(files("ncood_templates")))


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
    runs = [load_analysed_run(Path(p)) for p in run_paths]
    name = name or f"ncood-report-{lang}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures_dir = out_dir / f"{name}-figures"
    if figures_dir.exists():
        shutil.rmtree(figures_dir)
    figures_dir.mkdir(parents=True)

    sections: list[ReportSection] = [s for _, s in host().report_sections().items()]
    sections.sort(key=lambda s: (s.order, s.name))
    template_dirs = [core_templates()] + [s.template_dir for s in sections if s.template_dir]
    ctx = ReportContext(
        runs=runs,
        lang=lang,
        figures_dir=figures_dir,
        tex_dir=out_dir,
        strings=load_strings(lang, template_dirs),
    )
    env = environment(template_dirs)
    rendered = []
    for section in sections:
        data = section.build(ctx)
        if data is None:
            continue
        rendered.append(env.get_template(section.template).render(ctx=ctx, t=ctx.t, data=data))
    document = env.get_template(MAIN_TEMPLATE).render(
        ctx=ctx, t=ctx.t, body=Markup("".join(rendered))
    )
    tex = out_dir / f"{name}.tex"
    write_text(tex, document)

    if not pdf:
        return ReportResult(tex, None, ctx.figures)
    if not latexmk_available():
        return ReportResult(tex, None, ctx.figures, INSTALL_HINT)
    built = compile_pdf(tex, out_dir / f".{name}-build")
    final = out_dir / f"{name}.pdf"
    with atomic_path(final) as tmp:
        shutil.copyfile(built, tmp)
    return ReportResult(tex, final, ctx.figures)
