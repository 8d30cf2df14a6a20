"""Issue #10 on the report: the LaTeX sandbox (1), kills and atomic figures (6), --out (7)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ncood.cli import app
from ncood.host.loading import host
from ncood.host.registry import Registry
from ncood.report import build as build_module
from ncood.report.build import build_report

HAS_TEX = shutil.which("latexmk") is not None and shutil.which("pdflatex") is not None
needs_tex = pytest.mark.skipif(not HAS_TEX, reason="TeX (latexmk) is not installed")
runner = CliRunner()


@pytest.fixture
def light_sections(monkeypatch):
    """Only the cheap built-in sections: these tests are about the build, not the content."""
    keep = {"introduction", "training", "appendix"}

    class Host:
        def report_sections(self):
            sections = Registry("report section")
            for name, section in host().report_sections().items():
                if name in keep:
                    sections.add(name, section)
            return sections

    monkeypatch.setattr(build_module, "host", Host)


def plant(folder: Path, markers: Path, name: str) -> None:
    """latexmk rc files that would run a program, a package that would shadow the system's,
    and an .aux that TeX would read: each leaves a marker file if it is ever used."""
    folder.mkdir(parents=True, exist_ok=True)
    for rc in ("latexmkrc", ".latexmkrc"):
        (folder / rc).write_text(f'system("touch {markers}/rc-{rc}-ran");\n')
    (folder / "lmodern.sty").write_text(
        "\\ProvidesPackage{lmodern}\\typeout{PLANTED-STY}\n"
        f"\\newwrite\\planted\\immediate\\openout\\planted={markers}/sty-loaded.txt\n"
        "\\immediate\\closeout\\planted\n"
    )
    build = folder / f".{name}-build"
    build.mkdir(exist_ok=True)
    (build / f"{name}.aux").write_text("\\relax\\typeout{PLANTED-AUX}\n")


@needs_tex
def test_nothing_planted_in_out_or_home_runs_or_loads(
    demo_run, tmp_path, monkeypatch, light_sections
):
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    plant(out, markers, "ncood-report-fr")
    home = tmp_path / "home"
    plant(home, markers, "home")
    cwd = tmp_path / "cwd"
    plant(cwd, markers, "cwd")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TEXINPUTS", f"{out}{os.pathsep}")  # a hostile environment, too
    monkeypatch.chdir(cwd)

    result = build_report([demo_run.root], out_dir=out)
    from ncood.store.atomic import writer_tag

    assert result.pdf == out / "ncood-report-fr.pdf" and result.pdf.read_bytes()[:4] == b"%PDF"
    assert list(markers.iterdir()) == []
    log = (out / ".ncood-report-fr-build" / "ncood-report-fr.log").read_text(errors="replace")
    assert "PLANTED" not in log
    assert "lmodern.sty" in log and str(out / "lmodern.sty") not in log
    # the build folder was private and is gone; nothing of it is left in --out
    assert not list(Path(tempfile.gettempdir()).glob(f"ncood-latex-{writer_tag()}-*"))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_latexmk_runs_without_rc_files_in_a_confined_environment(tmp_path, monkeypatch):
    from ncood.report.compile import latex_environment, latexmk_command

    monkeypatch.setenv("TEXMFCNF", "/evil")
    monkeypatch.setenv("LATEXMKRCSYS", "/evil/rc")
    command = latexmk_command("x.tex")
    assert "-norc" in command and "-no-shell-escape" in command
    env = latex_environment(tmp_path)
    assert env["openin_any"] == env["openout_any"] == "p"
    assert env["TEXINPUTS"] == f"{tmp_path.resolve()}{os.pathsep}"
    assert "TEXMFCNF" not in env and "LATEXMKRCSYS" not in env


# -- a killed report ------------------------------------------------------------------------------


def fake_latexmk(tmp_path: Path) -> tuple[Path, Path]:
    """A latexmk (and pdflatex) that starts a child and waits, recording both pids."""
    bin_dir, pids = tmp_path / "bin", tmp_path / "pids"
    bin_dir.mkdir()
    pids.mkdir()
    script = f"#!/bin/sh\necho $$ > {pids}/latexmk\nsleep 300 &\necho $! > {pids}/child\nwait\n"
    for name in ("latexmk", "pdflatex"):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    return bin_dir, pids


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def wait_for(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def start_compile(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    bin_dir, pids = fake_latexmk(tmp_path)
    tex = tmp_path / "doc.tex"
    tex.write_text("\\documentclass{article}\\begin{document}x\\end{document}\n")
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from ncood.report.compile import compile_pdf
        compile_pdf(Path({str(tex)!r}), Path({str(tmp_path / "doc.pdf")!r}))
        """
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    assert wait_for(lambda: (pids / "child").is_file() and (pids / "child").read_text().strip())
    return child, pids


def kill_leftovers(pids: Path) -> None:
    for record in pids.iterdir():
        text = record.read_text().strip()
        if text and not gone(int(text)):
            os.kill(int(text), signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_latexmk_dies_with_a_killed_ncood_and_is_in_its_process_group(tmp_path):
    child, pids = start_compile(tmp_path)
    try:
        latexmk = int((pids / "latexmk").read_text())
        assert os.getpgid(latexmk) == os.getpgid(child.pid)
        builds = list(Path(tempfile.gettempdir()).glob(f"ncood-latex-*-{child.pid}-*"))
        assert len(builds) == 1
        child.kill()
        child.wait()
        assert wait_for(lambda: gone(latexmk), 5), "latexmk outlived ncood"
        # the next report removes the private build folder the dead one left
        from ncood.store.atomic import clean_stale

        clean_stale(Path(tempfile.gettempdir()), prefix="ncood-latex")
        assert not builds[0].exists()
    finally:
        child.kill()
        kill_leftovers(pids)


def test_a_terminated_report_takes_latexmk_and_its_children_along(tmp_path):
    child, pids = start_compile(tmp_path)
    try:
        latexmk, grandchild = (int((pids / n).read_text()) for n in ("latexmk", "child"))
        child.send_signal(signal.SIGTERM)
        assert child.wait(10) != 0
        assert wait_for(lambda: gone(latexmk) and gone(grandchild), 5)
        assert not list(Path(tempfile.gettempdir()).glob(f"ncood-latex-*-{child.pid}-*"))
    finally:
        child.kill()
        kill_leftovers(pids)


# -- figures and the report's files are written atomically ---------------------------------------


def test_a_full_disk_leaves_no_truncated_figure(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from ncood.report.figures import new_figure, save

    def half_then_full(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"%PDF-1.4 trunc")
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    fig, (axis,) = new_figure(1)
    axis.plot([0, 1], [0, 1])
    monkeypatch.setattr(Figure, "savefig", half_then_full)
    target = tmp_path / "figure.pdf"
    with pytest.raises(OSError):
        save(fig, target)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_report_says_so_and_keeps_the_previous_report(
    demo_run, tmp_path, monkeypatch, light_sections
):
    out = tmp_path / "out"
    first = runner.invoke(app, ["report", str(demo_run.root), "--out", str(out), "--no-pdf"])
    assert first.exit_code == 0, first.output
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    from ncood.report import figures

    real_save = figures.save
    calls = []

    def full_on_second(fig, path, tight=True):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(fig, path, tight)

    monkeypatch.setattr(figures, "save", full_on_second)
    result = runner.invoke(app, ["report", str(demo_run.root), "--out", str(out), "--no-pdf"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "no space left on device" in lines[0] and "previous report" in lines[0]
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_outputs_follow_the_umask(demo_run, tmp_path, light_sections):
    old = os.umask(0o022)
    try:
        result = build_report([demo_run.root], out_dir=tmp_path / "out", pdf=False)
    finally:
        os.umask(old)
    assert result.tex.stat().st_mode & 0o777 == 0o644
    assert result.figures and all(f.stat().st_mode & 0o777 == 0o644 for f in result.figures)
    assert result.figures[0].parent.stat().st_mode & 0o777 == 0o755


# -- --out of every kind ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "under-file", "read-only"])
def test_report_out_that_cannot_be_a_folder_is_one_line(demo_run, tmp_path, kind):
    if kind == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    blocker = tmp_path / "blocker"
    if kind == "read-only":
        blocker.mkdir(mode=0o555)
        out = blocker / "reports"
    else:
        blocker.write_text("a file")
        out = blocker if kind == "file" else blocker / "reports"
    result = runner.invoke(app, ["report", str(demo_run.root), "--out", str(out), "--no-pdf"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output and str(out) in result.stderr


# -- a section that exits, names LaTeX cannot set ------------------------------------------------


def test_a_section_calling_sys_exit_is_one_line_not_a_silent_exit(demo_run, tmp_path, monkeypatch):
    import ncood
    from ncood.report.context import ReportSection

    def leave(ctx):
        raise SystemExit(0)

    class Plugin:
        @ncood.hookimpl
        def register_report_sections(self, register):
            register(ReportSection("leaver", 15, "sections/none.tex.j2", leave))

    host().add(Plugin(), "leaver_plugin", distribution="tests", version="0", builtin=False)
    try:
        result = runner.invoke(
            app, ["report", str(demo_run.root), "--out", str(tmp_path / "out"), "--no-pdf"]
        )
    finally:
        host().remove("leaver_plugin")
    assert result.exit_code == 1
    assert "'leaver' (plugin leaver_plugin) failed: called sys.exit(0)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@needs_tex
def test_control_characters_and_very_long_names_still_build(demo_run, tmp_path, light_sections):
    import json

    run = tmp_path / "run"
    shutil.copytree(demo_run.root, run)
    manifest = json.loads((run / "manifest.json").read_text())
    hostile = "p\x01\x07q\nr\n\ns\x7f\x9b" + "x" * 300_000
    manifest["config"]["preset"] = hostile
    manifest["dataset"]["name"] = "d\x00\x1b[31m"
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = build_report([run], out_dir=tmp_path / "out")
    assert result.pdf.read_bytes()[:4] == b"%PDF"
    tex = result.tex.read_text()
    assert "\x01" not in tex and "\x00" not in tex and "x" * 2000 not in tex
