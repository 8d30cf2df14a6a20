"""Compile a .tex with latexmk in a sandbox; on failure, only the ``file:line:`` errors.

The report's ``--out`` folder is the user's (or anyone's: a cloned project, a shared folder),
so nothing in it may reach TeX or latexmk: a ``latexmkrc`` there is Perl that latexmk would
run, a ``lmodern.sty`` there would shadow the system's. The build therefore happens in a
private folder ncood creates (``mkdtemp``, mode 0700) holding only the .tex and the figures it
includes, with ``latexmk -norc`` (no rc file from anywhere), ``-no-shell-escape``, and an
environment that limits TeX to that folder and the system tree (``openin_any=p``,
``openout_any=p``, ``TEXINPUTS``, ``TEXMFHOME``). The PDF and the log are then copied into
place atomically. latexmk stays in ncood's process group and dies with ncood (SIGKILL
included, via ``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ncood.errors import NcoodError
from ncood.store.atomic import atomic_path, clean_stale, private_temp_dir

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
BUILD_PREFIX = "ncood-latex"
# What the TeX run inherits from ncood's environment; everything else (TEXINPUTS, TEXMFCNF,
# LATEXMKRCSYS, PERL5OPT, …) is dropped so that no variable redirects TeX or latexmk.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "SOURCE_DATE_EPOCH", "TMPDIR")
_FILE_LINE_ERROR = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+): (?P<message>.+)$")
_CONTEXT_LINE = re.compile(r"^l\.(?P<line>\d+) (?P<text>.*)$")
_FATAL = re.compile(r"^! (?P<message>.+)$")
_PR_SET_PDEATHSIG = 1


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


def latexmk_command(tex_name: str) -> list[str]:
    """The exact command, run inside the private build folder: PDF mode, stop at the first
    error, ``file:line:`` errors, no rc file, and no shell escape."""
    return [
        "latexmk",
        "-norc",
        "-pdf",
        "-interaction=nonstopmode",
        "-halt-on-error",
        "-file-line-error",
        "-no-shell-escape",
        tex_name,
    ]


def latex_environment(build_dir: Path) -> dict[str, str]:
    """A minimal environment: TeX reads the build folder and the system tree only, and may
    neither read nor write outside the build folder by absolute or parent paths."""
    env = {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    build = str(build_dir.resolve())
    env.update(
        openin_any="p",
        openout_any="p",
        shell_escape="f",
        TEXMFOUTPUT=build,
        TEXMFHOME=str(build_dir.resolve() / "no-user-tree"),
        # the build folder (not recursive), then (the trailing separator) the system path
        TEXINPUTS=build + os.pathsep,
        BSTINPUTS=build + os.pathsep,
        BIBINPUTS=build + os.pathsep,
    )
    return env


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


def compile_pdf(
    tex: Path,
    pdf: Path,
    log: Path | None = None,
    inputs: Iterable[Path] = (),
    timeout: int = 300,
) -> Path:
    """Compile ``tex`` in a private folder and put the PDF at ``pdf`` (atomically).

    ``inputs`` are the files the document includes (figures), relative to ``tex``'s folder;
    only they and the .tex are copied into the build. The full log goes to ``log``.
    """
    clean_stale(Path(tempfile.gettempdir()), prefix=BUILD_PREFIX)
    with private_temp_dir(BUILD_PREFIX) as build:
        shutil.copyfile(tex, build / tex.name)
        for item in inputs:
            relative = Path(item).relative_to(tex.parent) if Path(item).is_absolute() else item
            target = build / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tex.parent / relative, target)
        done = _run_latexmk(build, tex.name, timeout)
        built_pdf = build / tex.with_suffix(".pdf").name
        built_log = build / tex.with_suffix(".log").name
        kept_log = None
        if log is not None and built_log.is_file():
            with atomic_path(log) as tmp:
                shutil.copyfile(built_log, tmp)
            kept_log = log
        if done.returncode != 0 or not built_pdf.is_file():
            text = (
                built_log.read_text(errors="replace")
                if built_log.is_file()
                else done.stdout + done.stderr
            )
            problems = log_problems(text)
            if not problems:
                tail = [ln for ln in (done.stdout + done.stderr).strip().splitlines() if ln.strip()]
                problems = [LatexProblem("", None, tail[-1] if tail else f"exit {done.returncode}")]
            raise LatexError(tex, problems, kept_log)
        with atomic_path(pdf) as tmp:
            shutil.copyfile(built_pdf, tmp)
    return pdf


def _run_latexmk(build: Path, tex_name: str, timeout: int) -> subprocess.CompletedProcess:
    process = None
    try:
        with _terminate_as_interrupt():  # armed before the start: no window for a SIGTERM
            process = subprocess.Popen(
                latexmk_command(tex_name),
                cwd=build,
                env=latex_environment(build),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                preexec_fn=_die_with_parent(),
            )
            stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(process)
        raise NcoodError(f"latexmk did not finish within {timeout} s") from None
    except BaseException:  # Ctrl-C, SIGTERM, anything: latexmk and pdflatex go with us
        if process is not None:
            _kill_tree(process)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _die_with_parent():
    """A ``preexec_fn`` asking the kernel to SIGKILL the child when ncood dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # ncood died before the line above: follow it
            os._exit(1)

    return arm


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt meanwhile, so the cleanup above runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; elsewhere none are found)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _kill_tree(process: subprocess.Popen) -> None:
    for pid in [*_descendants(process.pid), process.pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    process.wait()
