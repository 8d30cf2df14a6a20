"""Compile a .tex with latexmk, without shell escape; on failure, only the ``file:line:`` errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ncood.errors import NcoodError

INSTALL_HINT = (
    "TeX is not installed; the .tex and figures are written. To get the PDF on Debian/Ubuntu: "
    "sudo apt-get install latexmk texlive-latex-recommended texlive-lang-french texlive-science "
    "texlive-fonts-recommended lmodern (or run `make setup`); elsewhere install TeX Live "
    "(https://tug.org/texlive/) with latexmk, then run `ncood report` again"
)
MISSING_PACKAGE_HINT = (
    "a LaTeX package is missing; on Debian/Ubuntu: sudo apt-get install "
    "texlive-latex-recommended texlive-lang-french texlive-science texlive-fonts-recommended"
)
MAX_ERRORS = 8
_FILE_LINE_ERROR = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+): (?P<message>.+)$")
_CONTEXT_LINE = re.compile(r"^l\.(?P<line>\d+) (?P<text>.*)$")
_FATAL = re.compile(r"^! (?P<message>.+)$")


@dataclass(frozen=True)
class LatexProblem:
    """One error of the log: where (``file:line``) and what, with the offending source text."""

    file: str
    line: int | None
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.line is not None else ""
        shown = f" [{self.source.strip()}]" if self.source.strip() else ""
        return f"{where}{self.message.strip()}{shown}"


class LatexError(NcoodError):
    """LaTeX stopped; ``problems`` are the errors of its log, ``log`` the log's path."""

    def __init__(self, tex: Path, problems: list[LatexProblem], log: Path | None, notes=()):
        self.tex, self.problems, self.log = tex, problems, log
        lines = [str(p) for p in problems[:MAX_ERRORS]] or ["(no error line in the log)"]
        lines += list(notes)
        if any(".sty' not found" in p.message for p in problems):
            lines.append(MISSING_PACKAGE_HINT)
        if log is not None:
            lines.append(f"full log: {log}")
        super().__init__(f"LaTeX failed on {tex.name}:\n  " + "\n  ".join(lines))


def latexmk_available() -> bool:
    return shutil.which("latexmk") is not None and shutil.which("pdflatex") is not None


def latexmk_command(tex: Path, build_dir: Path) -> list[str]:
    """The exact command: PDF mode, stop at the first error, ``file:line:`` errors, and
    no shell escape (a document can never run a program)."""
    return [
        "latexmk",
        "-pdf",
        "-interaction=nonstopmode",
        "-halt-on-error",
        "-file-line-error",
        "-no-shell-escape",
        f"-outdir={build_dir.resolve()}",
        tex.name,
    ]


def log_problems(text: str) -> list[LatexProblem]:
    """The ``file:line: message`` errors of a LaTeX log (``! message`` when none), each with
    the source line TeX shows after it (``l.57 \\foo``)."""
    problems: list[LatexProblem] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _FILE_LINE_ERROR.match(line)
        fatal = None if match else _FATAL.match(line)
        if not match and not fatal:
            continue
        source = ""
        for following in lines[index + 1 : index + 12]:
            context = _CONTEXT_LINE.match(following)
            if context:
                source = context.group("text")
                break
        if match:
            problems.append(
                LatexProblem(match["file"], int(match["line"]), match["message"], source)
            )
        elif not problems:  # a bare "! ..." only matters when nothing better was found
            problems.append(LatexProblem("", None, fatal["message"], source))
    if problems and problems[0].line is not None:
        problems = [p for p in problems if p.line is not None]
    return problems


def compile_pdf(tex: Path, build_dir: Path, timeout: int = 300) -> Path:
    """Run latexmk in ``build_dir``; return the PDF path there."""
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            latexmk_command(tex, build_dir),
            cwd=tex.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
            errors="replace",
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise NcoodError(f"latexmk did not finish within {timeout} s on {tex}") from None
    pdf = build_dir / tex.with_suffix(".pdf").name
    if done.returncode != 0 or not pdf.is_file():
        log = build_dir / tex.with_suffix(".log").name
        text = log.read_text(errors="replace") if log.is_file() else done.stdout + done.stderr
        problems = log_problems(text)
        if not problems:
            tail = [ln for ln in (done.stdout + done.stderr).strip().splitlines() if ln.strip()]
            problems = [LatexProblem("", None, tail[-1] if tail else f"exit {done.returncode}")]
        raise LatexError(tex, problems, log if log.is_file() else None)
    return pdf
