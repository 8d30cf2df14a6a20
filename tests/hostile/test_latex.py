"""The report's TeX: the sandbox latexmk runs in (no rc file, package or .aux planted in --out,
the home or the current directory is used), and text from runs and plugins that TeX or
matplotlib's mathtext would read as markup (control characters, very long names, ``$``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import ncood
from ncood.report.build import build_report
from ncood.store.run import RunDir

HAS_TEX = shutil.which("latexmk") is not None and shutil.which("pdflatex") is not None


needs_tex = pytest.mark.skipif(not HAS_TEX, reason="TeX (latexmk) is not installed")


# -- the sandbox -----------------------------------------------------------------------------------


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


# -- text that TeX or mathtext would read ----------------------------------------------------------


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


MATHTEXT = [r"$\x$", r"$\frac{$", "$$", r"a $x^2$ b", "$", r"\$"]


class MaxLogit:
    def fit(self, train, head) -> None:
        return None

    def score(self, split):
        return split.logits.max(axis=1).astype(np.float64)


class MathtextPlugin:
    @ncood.hookimpl
    def register_scorers(self, register):
        for index, title in enumerate(MATHTEXT):
            register(f"test_math{index}", MaxLogit, "max logit", title=f"t{index} {title}")


@pytest.fixture
def mathtext_scorers(plugin_host):
    plugin_host(MathtextPlugin(), "test_mathtext_plugin")


def test_a_mathtext_title_keeps_the_ood_section_and_its_figures(
    mathtext_scorers, demo_run, tmp_path
):
    from ncood.analyze.driver import analyze_file, select
    from ncood.host.loading import host
    from ncood.report.build import build_report

    run_dir = tmp_path / "run"
    shutil.copytree(demo_run.root, run_dir)
    run = RunDir.open(run_dir)
    names = [f"test_math{i}" for i in range(len(MATHTEXT))] + ["msp"]
    scorers, analyses = select(host(), names)
    for epoch in run.feature_epochs():
        analyze_file(run.features(epoch), run.analysis_dir(epoch), scorers, analyses)
    result = build_report([run_dir], out_dir=tmp_path / "out", pdf=False)
    tex = result.tex.read_text()
    assert r"\label{sec:ood}" in tex  # the built-in OOD section is in the document
    drawn = {path.name.split("-run")[0] for path in result.figures}
    assert {"roc", "ood-scores", "nc-ood-progress"} <= drawn
    for path in result.figures:
        assert path.is_file() and path.stat().st_size > 0


def test_a_literal_dollar_in_figure_text_stays_literal():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.cbook import is_math_text

    from ncood.report.context import plain

    for raw in (r"a\$b", "c$d", r"\$x$", "e\\"):
        assert not is_math_text(plain(raw))
