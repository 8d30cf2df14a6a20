"""Compile a .tex with latexmk, without shell escape; on failure, only the ``file:line:`` errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ncood.errors import NcoodError

INSTALL_HINT = (
    "TeX is not installed; the .tex and figures are written. To get the PDF on Debian/Ubuntu: "
    "sudo apt-get install latexmk texlive-latex-recommended texlive-lang-french texlive-science "
    "texlive-fonts-recommended lmodern"
)
_ERROR_LINE = re.compile(r"^(?:\S.*?):\d+: .*$|^! .*$", re.MULTILINE)


def latexmk_available() -> bool:
    return shutil.which("latexmk") is not None and shutil.which("pdflatex") is not None


def compile_pdf(tex: Path, build_dir: Path, timeout: int = 300) -> Path:
    """Run latexmk in ``build_dir``; return the PDF path there."""
    build_dir.mkdir(parents=True, exist_ok=True)
    command = [
        "latexmk",
        "-pdf",
        "-interaction=nonstopmode",
        "-halt-on-error",
        "-file-line-error",
        "-no-shell-escape",
        f"-outdir={build_dir.resolve()}",
        tex.name,
    ]
    try:
        done = subprocess.run(
            command,
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
        errors = _ERROR_LINE.findall(text)[:10] or [text.strip().splitlines()[-1:] or ["?"]][0]
        raise NcoodError(f"LaTeX failed on {tex}: " + " | ".join(e.strip() for e in errors))
    return pdf
